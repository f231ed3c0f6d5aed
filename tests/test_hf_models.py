"""Hugging Face models in the suite's GPT and back (lit_models/hf_convert.py): for tiny random
GPT-2, LLaMA (grouped-query attention, tied and untied) and Qwen2 (attention biases) models,
built here and saved to tmp_path, the GPT loaded with `init_from` computes transformers' own
logits (one pass and with the KV cache, a few hundred positions), generates its greedy
tokens, and exports back to a folder transformers loads with the same logits. What does not
fit is a UserError naming it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.errors import UserError
from lit_models import GPT
from lit_models.modules.decoding import generate, left_pad
from tests.conftest import config, run_cli

transformers = pytest.importorskip("transformers")

VOCAB, CONTEXT, LENGTH = 97, 320, 300  # LENGTH positions compared, within CONTEXT
ATOL = 1e-4


def gpt2_config(**kwargs):
    return transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=4, **kwargs
    )


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def llama_config(**kwargs):
    sizes = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: 2 query heads per key/value head
        max_position_embeddings=CONTEXT,
        rope_theta=500.0,  # low: the angles turn many times over 300 positions
        rms_norm_eps=1e-5,
    )
    return transformers.LlamaConfig(**{**sizes, **kwargs})


def qwen2_config(**kwargs):
    return transformers.Qwen2Config(
        **{**llama_config().to_dict(), "tie_word_embeddings": False, **kwargs}
    )


CONFIGS = {
    "gpt2": gpt2_config,
    "llama_tied": lambda: llama_config(tie_word_embeddings=True),
    "llama_untied": lambda: llama_config(tie_word_embeddings=False),
    "llama_biases": lambda: llama_config(attention_bias=True, mlp_bias=True),
    "qwen2": qwen2_config,
    # Llama 3.1/3.2's scaled RoPE: with head size 8 and theta 500 the wavelengths are 6, 30,
    # 142 and 668 positions, one kept, one blended, two divided by the factor.
    "llama3_rope": lambda: llama_config(rope_scaling=LLAMA3_ROPE),
    "linear_rope": lambda: llama_config(rope_scaling={"rope_type": "linear", "factor": 4.0}),
}


def hf_model(hf_config, seed: int = 0):
    """transformers' model of `hf_config` with weights far from their init (norm gains and
    biases too), so that a misplaced tensor or a wrong rotation shows in the logits."""
    hf_config.bos_token_id = hf_config.eos_token_id = hf_config.pad_token_id = None
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:  # gains near 1, biases near 0
                gain = name.endswith("weight")
                p.copy_(float(gain) + (0.2 if gain else 0.1) * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)
    return model


def saved(tmp_path, hf_config, name: str = "hf"):
    model = hf_model(hf_config)
    folder = tmp_path / name
    model.save_pretrained(folder)
    return model, folder


def tokens(n: int = LENGTH, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(params=list(CONFIGS))
def pair(request, tmp_path):
    """(transformers' model, the suite's GPT loaded from its folder, the folder)."""
    hf, folder = saved(tmp_path, CONFIGS[request.param]())
    return hf, GPT(init_from=str(folder), dropout=0.0).eval(), folder


@torch.no_grad()
def test_logits_equal_transformers(pair):
    hf, gpt, _ = pair
    ids = tokens()
    assert max_diff(gpt(ids), hf(ids).logits) < ATOL


@torch.no_grad()
def test_kv_cache_logits_equal_transformers(pair):
    """Prefill 40 tokens, then one token at a time to position 300: each step's logits are
    transformers' at that position."""
    hf, gpt, _ = pair
    ids = tokens()
    expected = hf(ids).logits[0]
    prefill = 40
    logits, state = gpt.start_decoding(ids[:, :prefill], torch.ones(1, prefill, dtype=torch.bool))
    worst = max_diff(logits[0], expected[prefill - 1])
    for t in range(prefill, LENGTH):
        logits, state = gpt.continue_decoding(state, ids[:, t])
        worst = max(worst, max_diff(logits[0], expected[t]))
    assert worst < ATOL


@torch.no_grad()
def test_greedy_generation_equals_transformers(pair):
    hf, gpt, _ = pair
    prompts = [tokens(12, seed=2)[0].tolist(), tokens(5, seed=3)[0].tolist()]
    ours = generate(gpt, prompts, max_new_tokens=25)
    ids, mask = left_pad(prompts)  # transformers' positions follow the mask, as ours do
    out = hf.generate(
        input_ids=ids,
        attention_mask=mask.long(),
        max_new_tokens=25,
        do_sample=False,
        pad_token_id=0,
    )
    assert ours == out[:, ids.size(1) :].tolist()
    assert all(len(set(row)) > 2 for row in ours)  # not one token repeated: a real comparison


@torch.no_grad()
def test_export_round_trip_gives_transformers_the_same_logits(pair, tmp_path):
    """HF -> GPT -> export_hf's writer -> HF, with the tokenizer files of the source copied."""
    from lit_models.hf_convert import save_hf

    hf, gpt, folder = pair
    (folder / "tokenizer_config.json").write_text("{}")
    out = tmp_path / "exported"
    out.mkdir()
    assert save_hf(gpt, out) == hf.config.architectures[0]
    again, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = tokens()
    assert max_diff(again.eval()(ids).logits, hf(ids).logits) < ATOL
    assert (out / "tokenizer_config.json").is_file()


# --- the suite's own GPTs, exported ------------------------------------------------------------


SUITE_GPTS = {
    "gpt_defaults": ({}, "GPT2LMHeadModel"),  # no biases: written as GPT-2's zero biases
    "gpt_sinusoidal_untied": (
        {"positional": "sinusoidal", "tie_weights": False, "bias": True},
        "GPT2LMHeadModel",
    ),
    "llama_style": (
        {"norm": "rmsnorm", "positional": "rope", "mlp": "swiglu", "n_ff": 40, "n_kv_head": 1},
        "LlamaForCausalLM",
    ),
    "qwen2_style": (
        {
            "norm": "rmsnorm",
            "positional": "rope",
            "mlp": "swiglu",
            "n_ff": 40,
            "attention_bias": True,
            "tie_weights": False,
        },
        "Qwen2ForCausalLM",
    ),
}


@pytest.mark.parametrize("name", list(SUITE_GPTS))
@torch.no_grad()
def test_a_suite_gpt_exports_with_equal_logits(name, tmp_path):
    from lit_models.hf_convert import save_hf

    options, architecture = SUITE_GPTS[name]
    torch.manual_seed(0)
    gpt = GPT(VOCAB, 64, n_layer=2, n_head=4, n_embd=32, dropout=0.0, **options).eval()
    for p in gpt.parameters():  # away from the init (biases and gains at 0 and 1)
        p.add_(0.1 * torch.randn_like(p))
    assert save_hf(gpt, tmp_path) == architecture
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = tokens(64)
    assert max_diff(hf(ids).logits, gpt(ids)) < ATOL


def test_a_gpt_no_hugging_face_class_computes_is_refused(tmp_path):
    from lit_models.hf_convert import save_hf

    gpt = GPT(VOCAB, 16, n_layer=1, n_head=2, n_embd=16, positional="rope")
    with pytest.raises(UserError, match="norm=layernorm, mlp=gelu, positional=rope"):
        save_hf(gpt, tmp_path)
    gqa = GPT(VOCAB, 16, n_layer=1, n_head=2, n_embd=16, n_kv_head=1)
    with pytest.raises(UserError, match=r"n_kv_head=1 \(n_head=2\)"):
        save_hf(gqa, tmp_path)


# --- what does not fit ---------------------------------------------------------------------------


def test_unsupported_architectures_are_named(tmp_path):
    bert = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2
    )
    bert.save_pretrained(tmp_path / "bert")
    with pytest.raises(UserError, match="model_type bert.*not supported.*llama"):
        GPT(init_from=str(tmp_path / "bert"))
    mistral = transformers.MistralConfig(**llama_config().to_dict(), sliding_window=64)
    _, folder = saved(tmp_path, mistral, "mistral")
    with pytest.raises(UserError, match="MistralForCausalLM.*not supported"):
        GPT(init_from=str(folder))
    _, folder = saved(tmp_path, qwen2_config(use_sliding_window=True, sliding_window=64), "q")
    with pytest.raises(UserError, match="sliding window"):
        GPT(init_from=str(folder))
    _, folder = saved(tmp_path, llama_config(attention_bias=True, mlp_bias=False), "biases")
    with pytest.raises(UserError, match="attention_bias=True with mlp_bias=False"):
        GPT(init_from=str(folder))


def test_rope_scaling_the_gpt_cannot_compute_is_refused(tmp_path):
    _, folder = saved(tmp_path, llama_config(rope_scaling={"rope_type": "dynamic", "factor": 2.0}))
    with pytest.raises(UserError, match="rope_type=dynamic"):
        GPT(init_from=str(folder))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2}}, "rope_type='yarn' is not known"),
        ({"rope_scaling": {"rope_type": "linear"}}, "rope_scaling.factor must be a positive"),
        ({"rope_scaling": {**LLAMA3_ROPE, "high_freq_factor": 1.0}}, "must exceed"),
        ({"rope_scaling": LLAMA3_ROPE, "positional": "learned"}, "needs positional=rope"),
    ],
    ids=["unknown", "no_factor", "low_high", "not_rope"],
)
def test_bad_rope_scaling_is_named(options, message):
    rope = {"norm": "rmsnorm", "positional": "rope", "mlp": "swiglu"}
    with pytest.raises(UserError, match=message):
        GPT(VOCAB, 64, n_layer=1, n_head=4, n_embd=32, **{**rope, **options})


def rewrite_weights(folder, change) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"),
            "miss model.layers.1.self_attn.k_proj.weight",
        ),
        (
            lambda t: t.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(40, 32)}),
            r"model.layers.0.mlp.up_proj.weight has shape \[40, 32\], its config.json says \[48, 32\]",
        ),
        (
            lambda t: t.update({"model.layers.2.mlp.up_proj.weight": torch.zeros(48, 32)}),
            "hold model.layers.2.mlp.up_proj.weight, which LlamaForCausalLM",
        ),
    ],
    ids=["missing", "shape", "unused"],
)
def test_weights_that_do_not_fit_the_config_are_named(tmp_path, change, message):
    _, folder = saved(tmp_path, llama_config())
    rewrite_weights(folder, change)
    with pytest.raises(UserError, match=message):
        GPT(init_from=str(folder))


def test_no_weights_or_no_config_is_named(tmp_path):
    _, folder = saved(tmp_path, llama_config())
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="holds no model.safetensors or pytorch_model.bin"):
        GPT(init_from=str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(UserError, match="has no config.json"):
        GPT(init_from=str(folder))


def test_a_hub_id_without_a_local_copy_stops_at_once_offline():
    with pytest.raises(UserError, match="not in the local cache.*hf download someone/tiny-llama"):
        GPT(init_from="someone/tiny-llama")


def test_pytorch_model_bin_and_the_bare_gpt2_names_load(tmp_path):
    """The hub's `gpt2` is a pytorch_model.bin of GPT2Model's names (h.0..., wte)."""
    hf, folder = saved(tmp_path, gpt2_config())
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    bare = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    bare["h.0.attn.bias"] = torch.ones(1, 1, CONTEXT, CONTEXT)  # old files' causal-mask buffer
    torch.save(bare, folder / "pytorch_model.bin")
    gpt = GPT(init_from=str(folder), dropout=0.0).eval()
    ids = tokens(50)
    with torch.no_grad():
        assert max_diff(gpt(ids), hf(ids).logits) < ATOL


def test_sharded_weights_load(tmp_path):
    hf = hf_model(llama_config())
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    gpt = GPT(init_from=str(tmp_path / "sharded"), dropout=0.0).eval()
    ids = tokens(50)
    with torch.no_grad():
        assert max_diff(gpt(ids), hf(ids).logits) < ATOL


def test_the_data_must_speak_the_model_vocabulary_and_fit_its_context(tmp_path):
    hf, folder = saved(tmp_path, gpt2_config())
    with pytest.raises(UserError, match=f"vocabulary of {VOCAB} tokens, the data 65"):
        GPT(vocab_size=65, block_size=32, init_from=str(folder))
    with pytest.raises(UserError, match=f"context of {CONTEXT} positions.*block_size=1024"):
        GPT(vocab_size=VOCAB, block_size=1024, init_from=str(folder))
    gpt = GPT(vocab_size=VOCAB, block_size=64, init_from=str(folder), dropout=0.0).eval()
    assert gpt.block_size == 64 and gpt.position.embedding.weight.shape[0] == 64
    ids = tokens(64)
    with torch.no_grad():
        assert max_diff(gpt(ids), hf(ids).logits) < ATOL
    # the architecture is in its hyperparameters, the folder is not needed to rebuild it
    assert gpt.hparams.init_from is None and gpt.hparams.n_layer == 2
    assert gpt.hparams.mlp == "gelu_tanh"  # GPT-2's gelu_new
    rebuilt = GPT(**gpt.hparams)
    rebuilt.load_state_dict(gpt.state_dict())


# --- through the CLI -----------------------------------------------------------------------------


def save_gpt_checkpoint(model: GPT, path, **extra) -> None:
    """A checkpoint as `python main.py fit` writes one (the fields the CLI reads)."""
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": {**model.hparams, "_class_path": "lit_models.GPT"},
        "pytorch-lightning_version": "2.6.6",
    }
    model.on_save_checkpoint(checkpoint)
    torch.save({**checkpoint, **extra}, path)


CHAT = ["--config", config("gpt_chat_pretrain.yaml"), "--data.init_args.block_size=32"]
TINY = ["--model.init_args.n_layer=1", "--model.init_args.n_head=2", "--model.init_args.n_embd=32"]
QUICK = [
    "--data.init_args.batch_size=4",
    "--trainer.max_steps=4",
    "--trainer.val_check_interval=2",
    "--trainer.limit_val_batches=2",
    "--trainer.callbacks=[]",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
]


def test_fine_tune_from_hugging_face_then_export_through_the_cli(tmp_path):
    """fit with init_from (a Llama of the chat data's 259 byte-level ids), then export_hf of
    its last.ckpt: beside it by default, with the source's tokenizer files, written again
    onto the same folder (replaced whole); transformers' logits equal the checkpoint's, and
    the checkpoint rebuilds without the source folder."""
    _, folder = saved(tmp_path, llama_config(vocab_size=259))
    run_cli("fit", *CHAT, *QUICK, f"--model.init_args.init_from={folder}")
    # (written after fit: a folder with a tokenizer trains only on data tokenized by it)
    (folder / "tokenizer.json").write_text(json.dumps({"stand-in": True}))
    (ckpt,) = tmp_path.glob("csv/**/checkpoints/last.ckpt")
    for _ in range(2):
        proc = run_cli("export_hf", "--ckpt_path", str(ckpt))  # it carries its config
        assert "LlamaForCausalLM written to" in proc.stdout
    out = ckpt.parent / "last_hf"
    assert json.loads((out / "tokenizer.json").read_text()) == {"stand-in": True}
    assert not [p for p in ckpt.parent.iterdir() if p.name.startswith(".")]  # no temporaries
    folder.rename(tmp_path / "moved")
    tuned = GPT.load_from_checkpoint(ckpt).eval()
    assert tuned.hparams.n_kv_head == 2 and tuned.hparams.positional == "rope"
    exported = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 259, (1, 32))
    with torch.no_grad():
        assert max_diff(exported(ids).logits, tuned(ids)) < ATOL


def test_the_data_vocabulary_must_be_the_model_vocabulary_in_the_cli(tmp_path):
    _, folder = saved(tmp_path, llama_config())
    proc = run_cli("fit", *CHAT, *QUICK, f"--model.init_args.init_from={folder}", check=False)
    assert proc.returncode == 2 and f"vocabulary of {VOCAB} tokens, the data 259" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_export_hf_refuses_what_it_cannot_write(tmp_path):
    gpt = GPT(vocab_size=259, block_size=32, n_layer=1, n_head=2, n_embd=16, positional="rope")
    ckpt = tmp_path / "rope.ckpt"
    save_gpt_checkpoint(gpt, ckpt)
    proc = run_cli("export_hf", *CHAT, "--ckpt_path", str(ckpt), check=False)
    assert proc.returncode == 2 and "has no Hugging Face class" in proc.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    ok = GPT(vocab_size=259, block_size=32, n_layer=1, n_head=2, n_embd=16)
    save_gpt_checkpoint(ok, ckpt)
    proc = run_cli(
        "export_hf",
        *CHAT,
        "--ckpt_path",
        str(ckpt),
        "--output",
        str(tmp_path / "taken"),
        check=False,
    )
    assert proc.returncode == 2 and "is not an exported model folder" in proc.stderr
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_a_suite_gpt_exports_with_its_data_tokenizer(tmp_path):
    """A GPT trained on the chat corpus's byte tokenizer, exported: transformers' AutoTokenizer
    of the folder gives the data's ids (its chat template the data's prompt), and the model
    continues a prompt as the checkpoint does."""
    from datamodules.chat import ChatDataModule, chat_prompt
    from lit_models.modules.decoding import generate

    chat = [*CHAT, "--data.init_args.format=chat"]  # trained on the chat template
    run_cli("fit", *chat, *QUICK, *TINY)
    (ckpt,) = tmp_path.glob("csv/**/checkpoints/last.ckpt")
    proc = run_cli("export_hf", "--ckpt_path", str(ckpt))  # the config it carries: format chat
    assert "GPT2LMHeadModel written to" in proc.stdout and "with its tokenizer" in proc.stdout
    out = ckpt.parent / "last_hf"
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    data = ChatDataModule()
    message = [{"role": "user", "content": "What is AI? é"}]
    prompt = tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    assert prompt == chat_prompt("What is AI? é")
    ids = tokenizer(prompt)["input_ids"]
    assert ids == data.encode(prompt)
    assert model.config.eos_token_id == data.tokenizer.token_to_id("<|endoftext|>")
    tuned = GPT.load_from_checkpoint(ckpt).eval()
    out_ids = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    assert out_ids[0, len(ids) :].tolist() == generate(tuned, [ids], max_new_tokens=8)[0]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_the_corpus_tokenizers_as_transformers_give_the_same_ids(kind):
    from datamodules.tokenizers import train_tokenizer

    lines = ["The cat sat on the mat.\n", "Ünïcode and 日本語 too\n"] * 10
    ours = train_tokenizer(kind, lines, bpe_vocab_size=300)
    theirs = ours.to_transformers()
    for text in ["The mat sat on the cat.", "too Ünïcode"]:
        ids = theirs(text)["input_ids"]
        assert ids == ours.encode(text) and theirs.decode(ids) == ours.decode(ids)
