"""LoRA on the suite's GPT (peft): the adapted model starts as the base, only the adapters
train, merging folds them in exactly, checkpoints hold the adapter and a reference to the
base, and the pretrain-then-adapt configs run through the CLI."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from cli.trainer import Trainer
from core.errors import UserError
from datamodules.chat import ChatDataModule
from lit_models.gpt import GPT
from lit_models.lora import ADAPTER_MARK, LoRAGPT
from tests.conftest import config, run_cli

BASE = {"vocab_size": 259, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
TINY = [
    "--model.init_args.n_layer=1",
    "--model.init_args.n_head=2",
    "--model.init_args.n_embd=32",
    "--data.init_args.block_size=32",
    "--data.init_args.batch_size=4",
    "--trainer.max_steps=4",
    "--trainer.val_check_interval=2",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
]
CSV = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=csv"]  # no W&B process to start


def save_gpt_checkpoint(model: GPT, path) -> None:
    """A checkpoint as `python main.py fit` writes one (the fields LoRA reads)."""
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": {**model.hparams, "_class_path": "lit_models.GPT"},
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )


@pytest.fixture
def base_ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "base.ckpt"
    save_gpt_checkpoint(GPT(**BASE, dropout=0.0), path)
    return path


@pytest.fixture(scope="module")
def batch():
    data = ChatDataModule(language="english", block_size=32, batch_size=8)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def lora(base_ckpt, **kwargs) -> LoRAGPT:
    options = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["in_proj", "fc"]}
    return LoRAGPT(str(base_ckpt), **{**options, **kwargs}).eval()


def test_at_initialization_the_adapted_model_is_the_base(base_ckpt, batch):
    base = GPT.load_from_checkpoint(base_ckpt).eval()
    model = lora(base_ckpt, target_modules=["in_proj", "out_proj", "fc", "proj"])
    with torch.no_grad():
        assert torch.equal(model(batch["input_ids"]), base(batch["input_ids"]))


def test_only_the_adapters_require_gradients(base_ckpt):
    model = lora(base_ckpt)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    # one A and one B per adapted projection: 2 layers x (in_proj, fc)
    assert len(trainable) == 2 * 2 * 2 and all(ADAPTER_MARK in n for n in trainable)
    assert all(".in_proj." in n or ".fc." in n for n in trainable)
    n_trainable, n_total = model.parameter_counts()
    assert n_trainable == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert n_total == GPT(**BASE).num_parameters() + n_trainable


def train_a_few_steps(model: LoRAGPT, batch, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    model.eval()


def test_training_moves_the_adapters_and_nothing_else(base_ckpt, batch):
    model = lora(base_ckpt)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_few_steps(model, batch)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(ADAPTER_MARK in k for k in changed)
    assert {k for k in after if "lora_B" in k} <= changed  # B leaves zero: the update is on


def test_merged_gpt_equals_the_adapted_model(base_ckpt, batch):
    model = lora(base_ckpt, target_modules=["in_proj", "out_proj", "fc", "proj"])
    train_a_few_steps(model, batch)
    merged = model.merged_gpt()
    assert isinstance(merged, GPT) and not any(ADAPTER_MARK in k for k in merged.state_dict())
    with torch.no_grad():
        adapted, folded = model(batch["input_ids"]), merged(batch["input_ids"])
    assert not torch.allclose(adapted, GPT.load_from_checkpoint(base_ckpt)(batch["input_ids"]))
    torch.testing.assert_close(folded, adapted, rtol=0, atol=1e-5)


def test_lora_on_a_llama_style_base_targets_the_same_projections(tmp_path, batch):
    """RMSNorm, RoPE, grouped-query attention and SwiGLU keep the projections' names: LoRA
    adapts the stacked Q/K/V (in_proj), W^O, [W_gate; W_up] (fc) and W_down (proj)."""
    torch.manual_seed(0)
    options = dict(norm="rmsnorm", positional="rope", mlp="swiglu", n_ff=64, n_kv_head=1)
    base_ckpt = tmp_path / "llama_style.ckpt"
    save_gpt_checkpoint(GPT(**BASE, **options, dropout=0.0), base_ckpt)
    model = lora(base_ckpt, target_modules=["in_proj", "out_proj", "fc", "proj"])
    base = GPT.load_from_checkpoint(base_ckpt).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch["input_ids"]), base(batch["input_ids"]))
    train_a_few_steps(model, batch)
    with torch.no_grad():
        adapted, folded = model(batch["input_ids"]), model.merged_gpt()(batch["input_ids"])
    assert not torch.allclose(adapted, base(batch["input_ids"]))
    torch.testing.assert_close(folded, adapted, rtol=0, atol=1e-5)


def test_a_missing_or_mismatched_base_is_a_clear_error(tmp_path, base_ckpt):
    with pytest.raises(UserError, match="no such file.*gpt_chat_pretrain"):
        LoRAGPT(str(tmp_path / "nowhere.ckpt"))
    with pytest.raises(UserError, match="vocabulary of 259 tokens, the data 65"):
        LoRAGPT(str(base_ckpt), vocab_size=65)
    with pytest.raises(UserError, match="context of 32 tokens"):
        LoRAGPT(str(base_ckpt), vocab_size=259, block_size=64)
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"_class_path": "lit_models.RNNLanguageModel"}},
        tmp_path / "rnn.ckpt",
    )
    with pytest.raises(UserError, match="not a GPT checkpoint"):
        LoRAGPT(str(tmp_path / "rnn.ckpt"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        LoRAGPT(str(tmp_path / "junk.ckpt"))


def test_the_cli_refuses_a_target_that_is_not_a_projection():
    """target_modules is a list of a Literal type: the parser names the key and the choices
    (--print_config: nothing would train if it were accepted)."""
    bad = "--model.init_args.target_modules=[in_proj, lm_head]"
    proc = run_cli(
        "fit", "--config", config("gpt_lora_chat.yaml"), bad, "--print_config", check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert 'key "target_modules"' in proc.stderr and "lm_head" in proc.stderr
    assert "'in_proj', 'out_proj', 'fc', 'proj'" in proc.stderr


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="the CPU message is for machines without CUDA"
)
def test_qlora_on_a_cpu_says_what_is_needed(base_ckpt):
    with pytest.raises(UserError, match="needs a CUDA GPU.*quantize=none"):
        LoRAGPT(str(base_ckpt), quantize="4bit")


@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None,
    reason="QLoRA needs CUDA and bitsandbytes",
)
def test_qlora_4bit_base_trains_the_adapters_and_merges(base_ckpt, batch):
    model = lora(base_ckpt, quantize="4bit")
    batch = {k: v.cuda() for k, v in batch.items()}
    before = {k: v.clone() for k, v in model.adapter_state_dict().items()}
    train_a_few_steps(model, batch)
    assert any(not torch.equal(before[k], v) for k, v in model.adapter_state_dict().items())
    base = GPT.load_from_checkpoint(base_ckpt).cuda().eval()
    with torch.no_grad():  # 4-bit weights: close to the base, not equal
        assert torch.isfinite(model(batch["input_ids"])).all()
        assert base(batch["input_ids"]).shape == model(batch["input_ids"]).shape


def test_pretrain_then_adapt_through_the_cli(tmp_path):
    """The two documented commands, then test, chat and merge_lora on the adapter."""
    run_cli("fit", "--config", config("gpt_chat_pretrain.yaml"), *TINY, *CSV)
    base = tmp_path / "csv" / "gpt_chat_pretrain" / "version_0" / "checkpoints" / "last.ckpt"
    assert base.is_file()  # in the pretraining run's own folder

    lora_args = [
        *("--config", config("gpt_lora_chat.yaml"), "--data.init_args.block_size=32"),
        f"--model.init_args.base={base}",
    ]
    fit = run_cli("fit", *lora_args, *TINY[3:], *CSV)
    assert "trainable parameters of" in fit.stdout
    (adapter,) = tmp_path.glob("csv/gpt_lora_chat/**/checkpoints/last.ckpt")
    checkpoint = torch.load(adapter, weights_only=True)
    assert checkpoint["state_dict"] and all(ADAPTER_MARK in k for k in checkpoint["state_dict"])
    assert checkpoint["lora_base"]["path"] == str(base.resolve())
    assert adapter.stat().st_size < base.stat().st_size / 2

    test = run_cli(
        "test", *lora_args, *CSV, "--ckpt_path", str(adapter), "--trainer.limit_test_batches=2"
    )
    assert "test/loss" in test.stdout

    run_cli("merge_lora", *lora_args, "--ckpt_path", str(adapter))
    merged = adapter.parent / "merged.ckpt"  # by default beside the adapter, in its run folder
    adapted = LoRAGPT.load_from_checkpoint(adapter).eval()
    plain = GPT.load_from_checkpoint(merged).eval()
    ids = torch.randint(0, 259, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(plain(ids), adapted(ids), rtol=0, atol=1e-5)
    # The merged checkpoint carries the LoRA run's config with the GPT as its model.
    test = run_cli("test", *CSV, "--ckpt_path", str(merged), "--trainer.limit_test_batches=2")
    assert "test/loss" in test.stdout

    # chat (in this process: the CLI passes the same model and data to Trainer.chat)
    data = ChatDataModule(language="english", block_size=32)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    (answer,) = trainer.chat(adapted, data, prompt="What is AI?", max_new_tokens=8)
    assert isinstance(answer, str)

    # the base changes (pretraining ran again): the adapter no longer loads, with a message
    save_gpt_checkpoint(GPT(**{**BASE, "n_layer": 1}), base)
    with pytest.raises(UserError, match="has changed since the adapter was trained"):
        LoRAGPT.load_from_checkpoint(adapter)


def test_a_missing_base_stops_the_cli_with_exit_status_2():
    proc = run_cli("fit", "--config", config("gpt_lora_chat.yaml"), *TINY[3:], *CSV, check=False)
    assert proc.returncode == 2
    assert "model.init_args.base is not set" in proc.stderr
    assert "--model.init_args.base seqmodels/<run-id>/checkpoints/last.ckpt" in proc.stderr
    assert "Traceback" not in proc.stderr
