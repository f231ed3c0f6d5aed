"""Hugging Face causal language models in the suite's GPT, and back: GPT-2 (GPT2LMHeadModel)
and the LLaMA family (LlamaForCausalLM: Llama 2/3, TinyLlama, SmolLM; Qwen2ForCausalLM).

A Hugging Face folder holds config.json and the weights (model.safetensors, or
pytorch_model.bin; either may be sharded with an index). Reading one (`read_pretrained`):

1. config.json names the family and sets the GPT's architecture (`gpt_settings`); what the
   GPT does not compute (a sliding window, scaled RoPE, another activation) is refused, named.
2. The tensors are checked against those transformers' own class has for that config (built
   on the meta device: names and shapes, no memory): a missing, unused or misshapen tensor is
   refused, named, so that no layer is ever left random.
3. One table per family maps the names (`FAMILIES`): a suite tensor is one HF tensor, or
   several stacked along the rows (q, k, v -> attn.in_proj; gate, up -> ff.fc). GPT-2 stores
   its block weights transposed (Conv1D: x W + b with W [in, out]) and Q, K, V fused already.
4. The GPT loads them strictly (`load_into`).

Writing (`save_hf`) runs the same tables backwards, for the class that expresses the GPT's
choices exactly (`hf_config`). transformers is imported only here, and only when used.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.constants import TOKENIZER_FILES
from core.errors import UserError
from core.hub import local_copy
from lit_models.modules.positional import ROPE_SCALING_KEYS


@dataclass(frozen=True)
class Family:
    model_type: str  # config.json's model_type
    architecture: str  # the transformers class
    top: dict[str, str]  # suite name -> HF name, outside the blocks
    layer: dict[str, tuple[str, ...]]  # in block i: suite name -> HF names stacked by rows
    layer_prefix: str  # where block i's tensors live in the HF names
    conv1d: bool = False  # the blocks' matrices are stored transposed (GPT-2)


LLAMA_TOP = {
    "token_embedding.weight": "model.embed_tokens.weight",
    "ln_f.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
LLAMA_LAYER = {
    "ln_attn.weight": ("input_layernorm.weight",),
    "attn.in_proj.weight": (
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
    ),
    "attn.in_proj.bias": (
        "self_attn.q_proj.bias",
        "self_attn.k_proj.bias",
        "self_attn.v_proj.bias",
    ),
    "attn.out_proj.weight": ("self_attn.o_proj.weight",),
    "attn.out_proj.bias": ("self_attn.o_proj.bias",),
    "ln_ff.weight": ("post_attention_layernorm.weight",),
    "ff.fc.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "ff.fc.bias": ("mlp.gate_proj.bias", "mlp.up_proj.bias"),
    "ff.proj.weight": ("mlp.down_proj.weight",),
    "ff.proj.bias": ("mlp.down_proj.bias",),
}
GPT2_TOP = {
    "token_embedding.weight": "transformer.wte.weight",
    "position.embedding.weight": "transformer.wpe.weight",
    "ln_f.weight": "transformer.ln_f.weight",
    "ln_f.bias": "transformer.ln_f.bias",
    "lm_head.weight": "lm_head.weight",
}
GPT2_LAYER = {
    f"{ours}.{kind}": (f"{theirs}.{kind}",)
    for ours, theirs in (
        ("ln_attn", "ln_1"),
        ("attn.in_proj", "attn.c_attn"),  # [W_Q; W_K; W_V] fused, as ours
        ("attn.out_proj", "attn.c_proj"),
        ("ln_ff", "ln_2"),
        ("ff.fc", "mlp.c_fc"),
        ("ff.proj", "mlp.c_proj"),
    )
    for kind in ("weight", "bias")
}
FAMILIES = {
    "gpt2": Family("gpt2", "GPT2LMHeadModel", GPT2_TOP, GPT2_LAYER, "transformer.h.{i}.", True),
    "llama": Family("llama", "LlamaForCausalLM", LLAMA_TOP, LLAMA_LAYER, "model.layers.{i}."),
    "qwen2": Family("qwen2", "Qwen2ForCausalLM", LLAMA_TOP, LLAMA_LAYER, "model.layers.{i}."),
}
SUPPORTED = ", ".join(f"{f.model_type} ({f.architecture})" for f in FAMILIES.values())
# Copied beside an exported model that came from a folder with them: the tokenizer's files
# and the model's generation defaults.
FILES_BESIDE_THE_WEIGHTS = (*TOKENIZER_FILES, "generation_config.json")


def table(family: Family, n_layer: int) -> list[tuple[str, tuple[str, ...]]]:
    """Every (suite name, HF names) pair of a model with `n_layer` blocks."""
    pairs = [(ours, (theirs,)) for ours, theirs in family.top.items()]
    for i in range(n_layer):
        prefix = family.layer_prefix.format(i=i)
        pairs += [
            (f"blocks.{i}.{ours}", tuple(prefix + t for t in theirs))
            for ours, theirs in family.layer.items()
        ]
    return pairs


def transposed(family: Family, hf_name: str, tensor: torch.Tensor) -> bool:
    """GPT-2's Conv1D matrices (in the blocks, not the embeddings) are stored [in, out]."""
    return family.conv1d and tensor.dim() == 2 and ".h." in hf_name


# --- reading a Hugging Face model -------------------------------------------------------------


@dataclass
class Pretrained:
    folder: str
    family: Family
    settings: dict[str, Any]  # the GPT's arguments its config.json sets
    tensors: dict[str, torch.Tensor]  # by HF name, checked against the config
    where: str = "model.init_args.init_from"  # the config key that named it, for messages


def read_pretrained(init_from: str, key: str = "model.init_args.init_from") -> Pretrained:
    """The model at `init_from` (a folder or a cached hub id), checked; UserError otherwise."""
    folder = resolve_folder(init_from, key)
    where = f"{key} {init_from}"
    config = read_config(folder, where)
    family = family_of(config, where)
    settings = gpt_settings(family, config, where)
    tensors = read_tensors(folder, where)
    model = meta_model(config)
    tensors = with_prefix(tensors, model.base_model_prefix)
    check_tensors(tensors, model, family, settings, where)
    return Pretrained(str(folder), family, settings, tensors, key)


def weights_sha256(pretrained: Pretrained) -> str:
    """SHA-256 of the model's architecture (the GPT settings its config.json gives) and of its
    tensors by name: a re-saved or re-sharded copy of the same weights hashes the same, any
    changed weight or setting does not."""
    h = hashlib.sha256(json.dumps(pretrained.settings, sort_keys=True).encode())
    for name in sorted(pretrained.tensors):
        tensor = pretrained.tensors[name].detach().cpu().contiguous()
        h.update(f"{name} {tensor.dtype} {list(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())  # its buffer, not a copy
    return h.hexdigest()


def hub_revision(folder: str | Path) -> str | None:
    """The commit of a hub id's local copy (the hub cache keeps it as snapshots/<commit>/);
    None for a folder of one's own."""
    path = Path(folder)
    return path.name if path.parent.name == "snapshots" else None


def resolve_folder(init_from: str, key: str = "model.init_args.init_from") -> Path:
    """A local folder, or the local copy of a hub id (downloaded first when online)."""
    files = "the model's files (config.json, model.safetensors and the tokenizer's)"
    return local_copy(init_from, key, files)


def read_config(folder: Path, where: str):
    if not (folder / "config.json").is_file():
        raise UserError(f"{where}: {folder} has no config.json (a Hugging Face model folder has).")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ValueError, KeyError, OSError) as err:
        raise UserError(f"{where}: config.json is not one transformers reads ({err}).") from None


def family_of(config, where: str) -> Family:
    family = FAMILIES.get(config.model_type)
    architectures = getattr(config, "architectures", None) or []
    if family is None or (architectures and family.architecture not in architectures):
        named = ", ".join(architectures) or config.model_type
        raise UserError(
            f"{where}: the architecture {named} (model_type {config.model_type}) is not "
            f"supported; init_from reads {SUPPORTED}."
        )
    return family


def gpt_settings(family: Family, config, where: str) -> dict[str, Any]:
    """The GPT arguments that compute what `config` describes."""
    if family.model_type == "gpt2":
        return gpt2_settings(config, where)
    return llama_settings(family, config, where)


GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def gpt2_settings(config, where: str) -> dict[str, Any]:
    act = config.activation_function
    refuse(
        where,
        {
            f"activation_function={act}": act not in GPT2_ACTIVATIONS,
            "scale_attn_weights=false": not config.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx=true": config.scale_attn_by_inverse_layer_idx,
            "add_cross_attention=true": config.add_cross_attention,
        },
    )
    return {
        "vocab_size": config.vocab_size,
        "block_size": config.n_positions,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_kv_head": None,
        "n_embd": config.n_embd,
        "n_ff": config.n_inner or 4 * config.n_embd,
        "bias": True,
        "attention_bias": False,
        "norm": "layernorm",
        "norm_eps": config.layer_norm_epsilon,
        "positional": "learned",
        "mlp": GPT2_ACTIVATIONS[act],
        "tie_weights": bool(config.tie_word_embeddings),
    }


def llama_settings(family: Family, config, where: str) -> dict[str, Any]:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope_type = rope_parameters(config).get("rope_type", "default")
    if family.model_type == "qwen2":
        bias, attention_bias, mixed_biases = False, True, ""  # Qwen2: on q, k, v only
        layer_types = getattr(config, "layer_types", None) or []
        sliding = config.use_sliding_window or "sliding_attention" in layer_types
    else:
        attention_bias = bool(config.attention_bias)  # on q, k, v and o
        mlp_bias = bool(getattr(config, "mlp_bias", False))
        bias, sliding = attention_bias, False  # both or neither: the GPT's `bias`
        mixed = attention_bias != mlp_bias
        mixed_biases = f"attention_bias={attention_bias} with mlp_bias={mlp_bias}" if mixed else ""
    refuse(
        where,
        {
            f"hidden_act={config.hidden_act}": config.hidden_act != "silu",
            f"head_dim={head_dim}": head_dim * config.num_attention_heads != config.hidden_size,
            f"RoPE scaling rope_type={rope_type}": rope_type not in ("default", *ROPE_SCALING_KEYS),
            "a sliding window (use_sliding_window)": sliding,
            mixed_biases: bool(mixed_biases),
        },
    )
    return {
        "vocab_size": config.vocab_size,
        "block_size": config.max_position_embeddings,
        "n_layer": config.num_hidden_layers,
        "n_head": config.num_attention_heads,
        "n_kv_head": config.num_key_value_heads or config.num_attention_heads,
        "n_embd": config.hidden_size,
        "n_ff": config.intermediate_size,
        "bias": bias,
        "attention_bias": attention_bias,
        "norm": "rmsnorm",
        "norm_eps": config.rms_norm_eps,
        "positional": "rope",
        "rope_theta": float(rope_parameters(config).get("rope_theta", 10000.0)),
        "rope_scaling": rope_scaling(config),
        "mlp": "swiglu",
        "tie_weights": bool(config.tie_word_embeddings),
    }


def rope_parameters(config) -> dict:
    """RoPE's settings, from transformers 5's `rope_parameters` or 4's rope_theta/rope_scaling."""
    params = getattr(config, "rope_parameters", None)
    if params:
        return dict(params)
    scaling = dict(getattr(config, "rope_scaling", None) or {})
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))
    theta = getattr(config, "rope_theta", 10000.0)
    return {**scaling, "rope_type": rope_type, "rope_theta": theta}


def rope_scaling(config) -> dict | None:
    """The GPT's `rope_scaling` (the keys its kind reads), None without scaling."""
    params = rope_parameters(config)
    kind = params.get("rope_type", "default")
    if kind not in ROPE_SCALING_KEYS:
        return None
    # transformers falls back to the model's context when the original one is not given
    params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
    return {"rope_type": kind, **{k: params[k] for k in ROPE_SCALING_KEYS[kind] if k in params}}


def refuse(where: str, unsupported: dict[str, bool]) -> None:
    """The first setting of config.json that the GPT does not compute, named."""
    for what, present in unsupported.items():
        if present:
            raise UserError(
                f"{where}: its config.json has {what}, which the suite's GPT does not compute; "
                "init_from reads models it reproduces exactly."
            )


def read_tensors(folder: Path, where: str) -> dict[str, torch.Tensor]:
    """The weights of `folder`: safetensors preferred, pytorch_model.bin read with
    weights_only=True; either may be sharded (an index file names the shards)."""
    from safetensors.torch import load_file

    def read_bin(path: Path) -> dict[str, torch.Tensor]:
        return torch.load(path, map_location="cpu", weights_only=True)

    for name, read in (("model.safetensors", load_file), ("pytorch_model.bin", read_bin)):
        files = [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [folder / shard for shard in sorted(set(weight_map.values()))]
        elif not files[0].is_file():
            continue
        tensors: dict[str, torch.Tensor] = {}
        for file in files:
            try:
                tensors.update(read(file))
            except Exception as err:  # a missing shard, a truncated file, a pickle with code
                raise UserError(f"{where}: {file.name} is not readable ({err}).") from None
        return tensors
    raise UserError(f"{where}: {folder} holds no model.safetensors or pytorch_model.bin.")


def meta_model(config):
    """transformers' own model of `config`, on the meta device: its tensors' names and shapes
    without their memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Files of the base model alone (the hub's `gpt2`: h.0..., wte) named as the LM's."""
    if any(k.startswith(prefix + ".") for k in tensors):
        return tensors
    return {k if k.startswith("lm_head.") else f"{prefix}.{k}": v for k, v in tensors.items()}


def check_tensors(tensors: dict, model, family: Family, settings: dict, where: str) -> None:
    """Every tensor of the config's model is there with its shape, and nothing else is."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    optional = {"lm_head.weight"} if settings["tie_weights"] else set()
    ignored = [
        re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []
    ]
    missing = sorted(set(expected) - set(tensors) - optional)
    if missing:
        raise UserError(f"{where}: the weights miss {listed(missing)}, which its config.json has.")
    unused = sorted(
        k for k in set(tensors) - set(expected) if not any(p.search(k) for p in ignored)
    )
    if unused:
        raise UserError(
            f"{where}: the weights hold {listed(unused)}, which {family.architecture} of its "
            "config.json has no place for (another architecture, or other sizes?)."
        )
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise UserError(
                f"{where}: {name} has shape {list(tensors[name].shape)}, its config.json says "
                f"{list(shape)}."
            )
    mapped = {h for _, theirs in table(family, settings["n_layer"]) for h in theirs}
    unmapped = sorted(set(expected) - mapped)
    if unmapped:
        raise UserError(f"{where}: no place in the suite's GPT for {listed(unmapped)}.")


def listed(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def fit_to_data(pretrained: Pretrained, vocab_size: int | None, block_size: int | None) -> dict:
    """The GPT's settings for this data: its vocabulary must be the model's; its block_size
    (if shorter) bounds the context and the KV cache."""
    settings = dict(pretrained.settings)
    where = f"{pretrained.where} {pretrained.folder}"
    if vocab_size is not None and vocab_size != settings["vocab_size"]:
        raise UserError(
            f"{where} has a vocabulary of {settings['vocab_size']} tokens, the data "
            f"{vocab_size}: the token ids would mean other tokens. Use data tokenized with the "
            "model's own tokenizer (data.init_args.tokenizer: pretrained, data.init_args.pretrained_tokenizer: the "
            "model's folder)."
        )
    if block_size is not None:
        if block_size > settings["block_size"]:
            raise UserError(
                f"{where} has a context of {settings['block_size']} positions, shorter than "
                f"data.init_args.block_size={block_size}: lower data.init_args.block_size to "
                f"{settings['block_size']} or less."
            )
        settings["block_size"] = block_size
    return settings


def load_into(gpt: torch.nn.Module, pretrained: Pretrained) -> None:
    """Load the checked HF tensors into `gpt`, built with `pretrained.settings` (strictly: every
    GPT tensor is set)."""
    family, tensors, settings = pretrained.family, pretrained.tensors, pretrained.settings
    state = {}
    for ours, theirs in table(family, settings["n_layer"]):
        if all(t in tensors for t in theirs):
            parts = [
                tensors[t].t() if transposed(family, t, tensors[t]) else tensors[t] for t in theirs
            ]
            state[ours] = torch.cat(parts, dim=0)
    if settings["tie_weights"]:
        state["lm_head.weight"] = state["token_embedding.weight"]
    if "position.embedding.weight" in state:  # learned positions, as far as the GPT's context
        state["position.embedding.weight"] = state["position.embedding.weight"][: gpt.block_size]
    try:
        gpt.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(
            f"{pretrained.where} {pretrained.folder}: does not fit the GPT ({err})."
        ) from None


# --- writing one --------------------------------------------------------------------------------


def hf_config(hp, special_ids: dict | None = None):
    """The transformers config (and the family) that computes exactly what a GPT with
    hyperparameters `hp` does; UserError naming the choices none of them has."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    n_kv_head = hp.get("n_kv_head") or hp["n_head"]
    choices = {
        k: hp.get(k, d)
        for k, d in (("norm", "layernorm"), ("mlp", "gelu"), ("positional", "learned"))
    }
    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None, **(special_ids or {})}
    common = {"vocab_size": hp["vocab_size"], "tie_word_embeddings": hp["tie_weights"], **ids}
    if choices == {"norm": "rmsnorm", "mlp": "swiglu", "positional": "rope"}:
        llama = {
            "hidden_size": hp["n_embd"],
            "intermediate_size": hp["n_ff"],
            "num_hidden_layers": hp["n_layer"],
            "num_attention_heads": hp["n_head"],
            "num_key_value_heads": n_kv_head,
            "max_position_embeddings": hp["block_size"],
            "rms_norm_eps": hp.get("norm_eps", 1e-5),
            "rope_theta": hp.get("rope_theta", 10000.0),
            "rope_scaling": hp.get("rope_scaling"),
            "hidden_act": "silu",
            **common,
        }
        if hp.get("attention_bias") and not hp["bias"]:
            return FAMILIES["qwen2"], Qwen2Config(**llama, use_sliding_window=False)
        return FAMILIES["llama"], LlamaConfig(
            **llama,
            head_dim=hp["n_embd"] // hp["n_head"],
            attention_bias=hp["bias"],
            mlp_bias=hp["bias"],
        )
    if (
        choices["norm"] == "layernorm"
        and choices["mlp"] in ("gelu", "gelu_tanh")
        and choices["positional"] in ("learned", "sinusoidal")
        and n_kv_head == hp["n_head"]
    ):
        # GPT-2 has every bias; a GPT without them exports them as zeros, exactly the same.
        return FAMILIES["gpt2"], GPT2Config(
            n_positions=hp["block_size"],
            n_embd=hp["n_embd"],
            n_layer=hp["n_layer"],
            n_head=hp["n_head"],
            n_inner=hp.get("n_ff") or 4 * hp["n_embd"],
            activation_function="gelu_new" if choices["mlp"] == "gelu_tanh" else "gelu",
            layer_norm_epsilon=hp.get("norm_eps", 1e-5),
            **common,
        )
    named = ", ".join(f"{k}={v}" for k, v in choices.items())
    if n_kv_head != hp["n_head"]:
        named += f", n_kv_head={n_kv_head} (n_head={hp['n_head']})"
    raise UserError(
        f"a GPT with {named} has no Hugging Face class: LlamaForCausalLM and Qwen2ForCausalLM "
        "need norm=rmsnorm, mlp=swiglu and positional=rope; GPT2LMHeadModel needs "
        "norm=layernorm, mlp=gelu or gelu_tanh, positional=learned or sinusoidal and "
        "n_kv_head=n_head."
    )


def hf_tensors(gpt: torch.nn.Module, family: Family, config) -> dict[str, torch.Tensor]:
    """The GPT's weights under the HF names (and layouts) of `config`'s model."""
    state = {k: v.detach().cpu() for k, v in gpt.state_dict().items()}
    if gpt.hparams.get("positional") == "sinusoidal":  # GPT-2's table holds the fixed sinusoids
        state["position.embedding.weight"] = gpt.position.pe.detach().cpu()
    expected = {k: v for k, v in meta_model(config).state_dict().items()}
    out = {}
    for ours, theirs in table(family, gpt.hparams.n_layer):
        if not all(t in expected for t in theirs):
            continue
        rows = [expected[t].shape[-1 if transposed(family, t, expected[t]) else 0] for t in theirs]
        like = state.get(ours)
        if like is None:  # GPT-2's biases of a GPT without biases
            dtype = state["token_embedding.weight"].dtype
            like = torch.zeros(sum(rows), *expected[theirs[0]].shape[1:], dtype=dtype)
        for t, part in zip(theirs, like.split(rows, dim=0), strict=True):
            out[t] = (part.t() if transposed(family, t, expected[t]) else part).contiguous().clone()
    if config.tie_word_embeddings:
        out.pop("lm_head.weight", None)  # transformers ties it to the embedding, as ours is
    for name, tensor in expected.items():
        if name in out and tuple(out[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: {list(out[name].shape)} for {list(tensor.shape)}")
    return out


def save_hf(gpt: torch.nn.Module, folder: Path, tokenizer=None) -> str:
    """Write `gpt` into the (new, empty) `folder` as transformers' AutoModelForCausalLM reads it
    (config.json, model.safetensors) and beside it the tokenizer of the Hugging Face folder
    the GPT came from, else `tokenizer` (transformers', from the data) when given; returns
    the class written."""
    from safetensors.torch import save_file

    source = Path(gpt.hf_source) if getattr(gpt, "hf_source", None) else None
    special_ids = source_special_ids(source, gpt.hparams["vocab_size"])
    if special_ids is not None:
        tokenizer = None  # same vocabulary as the source: its own files are copied
    elif tokenizer is not None:
        roles = ("bos", "eos", "pad")
        special_ids = {f"{r}_token_id": getattr(tokenizer, f"{r}_token_id") for r in roles}
    family, config = hf_config(gpt.hparams, special_ids)
    config.architectures = [family.architecture]
    tensors = hf_tensors(gpt, family, config)
    dtypes = {t.dtype for t in tensors.values()}
    config.dtype = str(next(iter(dtypes))).removeprefix("torch.") if len(dtypes) == 1 else None
    config.save_pretrained(folder)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    elif special_ids is not None:
        for name in FILES_BESIDE_THE_WEIGHTS:
            if (source / name).is_file():
                shutil.copy2(source / name, folder / name)
    return family.architecture


def source_special_ids(source: Path | None, vocab_size: int) -> dict | None:
    """bos/eos/pad ids of the HF folder the GPT came from, if it is still there with the same
    vocabulary; None otherwise."""
    if source is None or not (source / "config.json").is_file():
        return None
    config = json.loads((source / "config.json").read_text())
    if config.get("vocab_size") != vocab_size:
        return None
    return {k: config.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
