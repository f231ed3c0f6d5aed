"""LoRA on a Hugging Face base (a tiny random LLaMA with the byte tokenizer's 259 ids, built
here and saved to tmp_path): the adapted model starts as transformers' model, adapters by
role compute what peft computes on transformers' own LLaMA with the same A and B, merging
keeps the logits, `merge_lora --format hf` writes a folder transformers loads with the
adapted model's logits, a changed base is refused, and QLoRA on this machine stops with
exit status 2."""

from __future__ import annotations

import pytest
import torch

from core.errors import UserError
from lit_models import GPT
from lit_models.lora import ADAPTER_MARK, LoRAGPT
from lit_models.modules.decoding import generate
from tests.conftest import config, run_cli
from tests.test_hf_models import hf_model, llama_config

transformers = pytest.importorskip("transformers")

VOCAB = 259  # the chat data's byte tokenizer
ROLES = ["q", "k", "v", "o", "gate", "up", "down"]
# our module (after the roles' split) -> transformers' LLaMA module, in block / layer i
HF_MODULE = {
    "attn.in_proj.q": "self_attn.q_proj",
    "attn.in_proj.k": "self_attn.k_proj",
    "attn.in_proj.v": "self_attn.v_proj",
    "attn.out_proj": "self_attn.o_proj",
    "ff.fc.gate": "mlp.gate_proj",
    "ff.fc.up": "mlp.up_proj",
    "ff.proj": "mlp.down_proj",
}
CSV = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=csv"]
QUICK = [
    "--trainer.max_steps=6",
    "--trainer.val_check_interval=3",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
]


def tiny_llama_config(**kwargs):
    """test_hf_models' tiny LLaMA with the byte tokenizer's vocabulary, untied."""
    sizes = dict(vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=False)
    return llama_config(**{**sizes, **kwargs})


@pytest.fixture
def llama(tmp_path):
    """(transformers' tiny LLaMA, its folder)."""
    model = hf_model(tiny_llama_config())
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    return model, folder


def ids(n: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, n), generator=torch.Generator().manual_seed(seed))


def lora(folder, targets, **kwargs) -> LoRAGPT:
    options = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets}
    return LoRAGPT(str(folder), **{**options, **kwargs}).eval()


def train_a_few_steps(model: LoRAGPT, steps: int = 3) -> None:
    """Steps on random tokens: enough to move every B away from zero."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for step in range(steps):
        x = ids(seed=10 + step)
        loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@torch.no_grad()
def test_lora_on_an_imported_llama_starts_as_transformers_model(llama):
    hf, folder = llama
    model = lora(folder, ROLES)
    x = ids()
    torch.testing.assert_close(model(x), hf(x).logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(
        model(x), GPT(init_from=str(folder), dropout=0.0)(x), rtol=0, atol=1e-5
    )


def adapted_names(model: LoRAGPT) -> dict[str, tuple[int, int]]:
    """Each adapted module of block 0 -> (rows of B, columns of A)."""
    state = {
        k.removeprefix("model.base_model.model.blocks.0."): v
        for k, v in model.adapter_state_dict().items()
    }
    modules = {k.split(".lora_")[0] for k in state if "." in k and not k.startswith("model.")}
    return {
        m: (
            state[f"{m}.lora_B.default.weight"].shape[0],
            state[f"{m}.lora_A.default.weight"].shape[1],
        )
        for m in modules
    }


def test_role_targets_select_the_expected_projections(llama):
    _, folder = llama
    d, kv, ff = 32, 16, 48  # n_embd; 2 key/value heads of 8; intermediate_size
    cases = {
        ("q", "v"): {"attn.in_proj.q": (d, d), "attn.in_proj.v": (kv, d)},
        ("k",): {"attn.in_proj.k": (kv, d)},
        ("o", "down"): {"attn.out_proj": (d, d), "ff.proj": (d, ff)},
        ("gate", "up"): {"ff.fc.gate": (ff, d), "ff.fc.up": (ff, d)},
        # the names: one adapter for the stacked rows
        ("in_proj", "fc"): {"attn.in_proj": (d + 2 * kv, d), "ff.fc": (2 * ff, d)},
        ("out_proj", "o"): {"attn.out_proj": (d, d)},  # one module, named twice
    }
    for targets, expected in cases.items():
        model = lora(folder, list(targets))
        assert adapted_names(model) == expected, targets
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(ADAPTER_MARK in n for n in trainable)


def test_overlapping_or_missing_roles_are_refused(llama, tmp_path):
    _, folder = llama
    with pytest.raises(UserError, match="in_proj and q, v: in_proj holds q, k, v already"):
        lora(folder, ["in_proj", "q", "v"])
    with pytest.raises(UserError, match="fc and up: fc holds gate, up already"):
        lora(folder, ["fc", "up"])
    gpt2 = tmp_path / "gpt2"
    hf_model(
        transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    ).save_pretrained(gpt2)
    with pytest.raises(UserError, match="mlp=gelu_tanh, which has no gate"):
        lora(gpt2, ["gate"])
    model = lora(gpt2, ["q", "up", "down"])  # GPT-2's fused c_attn, split by role too; up is fc
    assert set(adapted_names(model)) == {"attn.in_proj.q", "ff.fc", "ff.proj"}


@torch.no_grad()
def copy_into_peft(model: LoRAGPT, hf) -> torch.nn.Module:
    """transformers' LLaMA adapted by peft on the same roles, with our trained A and B."""
    from peft import LoraConfig, get_peft_model

    names = [theirs.split(".")[1] for theirs in HF_MODULE.values()]
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=names)
    theirs = get_peft_model(hf, config)
    target = dict(theirs.named_parameters())
    copied = 0
    for name, tensor in model.adapter_state_dict().items():
        i, rest = name.removeprefix("model.base_model.model.blocks.").split(".", 1)
        module, lora_part = rest.split(".lora_")
        key = f"base_model.model.model.layers.{i}.{HF_MODULE[module]}.lora_{lora_part}"
        target[key].copy_(tensor)
        copied += 1
    assert copied == sum(1 for k in target if ADAPTER_MARK in k)  # every adapter, once
    return theirs.eval()


@torch.no_grad()
def check_close(a, b, atol=1e-4):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


def test_role_adapters_compute_what_peft_computes_on_transformers_llama(llama):
    hf, folder = llama
    model = lora(folder, ROLES)
    train_a_few_steps(model)
    x = ids()
    with torch.no_grad():
        adapted = model(x)
        assert (adapted - hf(x).logits).abs().max() > 1e-2  # the adapters changed the model
        check_close(adapted, copy_into_peft(model, hf)(x).logits)
        check_close(model.merged_gpt()(x), adapted, atol=1e-5)


def test_fit_then_merge_to_hf_through_the_cli(llama, tmp_path):
    """fit with configs/llama_lora_tiny.yaml on the tiny folder, then merge_lora in both
    formats: the Hugging Face folder loads in transformers with the adapted model's logits."""
    hf, folder = llama
    base = [f"--model.init_args.base={folder}"]
    fit = run_cli("fit", "--config", config("llama_lora_tiny.yaml"), *base, *QUICK, *CSV)
    assert "LoRA r=4 on q, v, o, gate, down" in fit.stdout
    (adapter,) = tmp_path.glob("csv/llama_lora_tiny/**/checkpoints/last.ckpt")
    checkpoint = torch.load(adapter, weights_only=True)
    reference = checkpoint["lora_base"]
    assert reference["base"] == str(folder) and reference["revision"] is None
    assert len(reference["sha256"]) == 64 and all(
        ADAPTER_MARK in k for k in checkpoint["state_dict"]
    )

    merge = [
        "merge_lora",
        "--config",
        config("llama_lora_tiny.yaml"),
        *base,
        "--ckpt_path",
        str(adapter),
    ]
    run_cli(*merge, "--format", "hf")
    run_cli(*merge)  # --format ckpt, the default: merged.ckpt
    adapted = LoRAGPT.load_from_checkpoint(adapter).eval()
    merged_hf = transformers.AutoModelForCausalLM.from_pretrained(
        adapter.parent / "merged_hf"
    ).eval()
    assert merged_hf.config.architectures == ["LlamaForCausalLM"]
    merged = GPT.load_from_checkpoint(adapter.parent / "merged.ckpt").eval()
    x = ids()
    with torch.no_grad():
        expected = adapted(x)
        assert (expected - hf(x).logits).abs().max() > 1e-3  # training moved it
        check_close(merged_hf(x).logits, expected)
        check_close(merged(x), expected, atol=1e-5)
    # decoding (KV cache) through the adapters gives the merged model's tokens
    prompts = [x[0, :10].tolist(), x[1, :4].tolist()]
    tokens = generate(adapted, prompts, max_new_tokens=12)
    assert tokens == generate(merged, prompts, max_new_tokens=12)
    assert all(len(set(row)) > 2 for row in tokens)  # not one token repeated: a real comparison


def test_a_changed_hf_base_is_refused(llama, tmp_path):
    hf, folder = llama
    model = lora(folder, ["q", "v"])
    adapter = tmp_path / "adapter.ckpt"
    checkpoint = {"state_dict": model.adapter_state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save({**checkpoint, "pytorch-lightning_version": "2.6.6"}, adapter)
    assert LoRAGPT.load_from_checkpoint(adapter) is not None  # the same base loads

    hf_model(tiny_llama_config(), seed=1).save_pretrained(folder)  # other weights, same shapes
    with pytest.raises(UserError, match="has changed since the adapter was trained"):
        LoRAGPT.load_from_checkpoint(adapter)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_qlora_on_this_machine_stops_with_exit_status_2(llama):
    _, folder = llama
    proc = run_cli(
        *("fit", "--config", config("llama_lora_tiny.yaml"), f"--model.init_args.base={folder}"),
        *("--model.init_args.quantize=4bit", *QUICK, *CSV),
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: model.init_args.quantize=4bit (QLoRA) needs a CUDA GPU" in proc.stderr
    assert "quantize=none" in proc.stderr


def test_a_hub_id_without_a_local_copy_is_a_clear_error():
    proc = run_cli(
        *(
            "fit",
            "--config",
            config("llama_lora_tiny.yaml"),
            "--model.init_args.base=nobody/no-such-model",
        ),
        *QUICK,
        *CSV,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (
        "model.init_args.base nobody/no-such-model: no such folder, and not in the local cache"
        in proc.stderr
    )


def test_an_hf_base_must_speak_the_data_token_ids(llama):
    _, folder = llama
    with pytest.raises(
        UserError, match="model.init_args.base .* vocabulary of 259 tokens, the data 65"
    ):
        lora(folder, ["q"], vocab_size=65)
    with pytest.raises(
        UserError, match="context of 128 positions, shorter than data.init_args.block_size=256"
    ):
        lora(folder, ["q"], vocab_size=VOCAB, block_size=256)


def test_an_hf_base_names_its_own_tokenizer_for_the_data_check(llama):
    """LoRAGPT.setup compares the data's tokenizer_name with the base's: a Hugging Face base
    names the tokenizer beside its weights (none: nothing to compare)."""
    from core.hub import tokenizer_name_in

    _, folder = llama
    assert lora(folder, ["q"]).base_tokenizer is None
    (folder / "tokenizer.json").write_text("{}")
    assert lora(folder, ["q"]).base_tokenizer == tokenizer_name_in(folder) is not None
