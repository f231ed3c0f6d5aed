"""`merge_lora`: fold a LoRA adapter into its base and write a plain GPT checkpoint, or a
Hugging Face folder.

python main.py merge_lora --config configs/gpt_lora_chat.yaml --ckpt_path ADAPTER.ckpt [--output merged.ckpt]
python main.py merge_lora --config configs/llama_lora_smollm.yaml --ckpt_path ADAPTER.ckpt --format hf [--output DIR]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import yaml

from cli.checkpoints import does_not_fit, read_checkpoint
from cli.commands.export_hf import write_hf_folder
from cli.config import CHECKPOINT_CONFIG
from core.errors import UserError
from core.files import atomic_path

MergedFormat = Literal["ckpt", "hf"]


def merge_lora(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None = None,
    output: str | None = None,
    format: MergedFormat = "ckpt",
) -> str:
    """Fold a LoRA adapter into its base GPT (W + alpha/r B A) and write the merged model.

    Args:
        ckpt_path: the adapter checkpoint of a LoRA run (its base is found from it).
        output: where the merged model goes (written atomically); by default merged.ckpt
            (or the folder merged_hf) beside the adapter, in its run's folder.
        format: `ckpt`, a plain GPT checkpoint (loadable by `GPT.load_from_checkpoint` and by
            test / generate with a GPT config); `hf`, a Hugging Face folder, as `export_hf`
            writes one (LlamaForCausalLM, Qwen2ForCausalLM or GPT2LMHeadModel, with the
            tokenizer files of a Hugging Face base beside it).
    """
    from lit_models.lora import LoRAGPT

    if not isinstance(model, LoRAGPT):
        raise UserError(
            f"merge_lora needs a LoRA config (model: lit_models.lora.LoRAGPT), not {type(model).__name__}."
        )
    if not ckpt_path:
        raise UserError("merge_lora: give the adapter checkpoint, --ckpt_path ADAPTER.ckpt")
    adapter_checkpoint = load_adapter(model, ckpt_path)
    if model.hparams.quantize != "none":  # fold into full-precision weights, on the CPU
        model = LoRAGPT(**{**model.hparams, "quantize": "none"})
        model.load_state_dict({k: v.cpu() for k, v in adapter_checkpoint["state_dict"].items()})
    merged = model.cpu().merged_gpt()
    beside = Path(ckpt_path).parent / ("merged_hf" if format == "hf" else "merged.ckpt")
    path = Path(output) if output else beside
    if format == "hf":
        write_hf_folder(merged, path, datamodule)
    else:
        write_checkpoint(merged, model, datamodule, adapter_checkpoint, ckpt_path, path)
    trainable, _ = model.parameter_counts()
    print(
        f"merged the adapter ({trainable:,} parameters) into {model.hparams.base}: "
        f"{path} (a plain GPT, {merged.num_parameters():,} parameters)"
    )
    return str(path)


def write_checkpoint(
    merged, model, datamodule, adapter_checkpoint: dict, ckpt_path: str, path: Path
) -> None:
    """The merged GPT as `fit` writes a GPT checkpoint, with where it came from and the
    adapter run's config with the GPT as its model (so `--ckpt_path merged.ckpt` alone works)."""
    checkpoint = {
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
        "state_dict": merged.state_dict(),
        "hyper_parameters": {**merged.hparams, "_class_path": "lit_models.GPT"},
        "lora_merged": {
            "adapter": str(Path(ckpt_path).resolve()),
            "base": model.base_reference,
            "base_sha256": model.hparams.base_sha256,
        },
    }
    if isinstance(adapter_config := adapter_checkpoint.get(CHECKPOINT_CONFIG), str):
        checkpoint[CHECKPOINT_CONFIG] = merged_config(adapter_config, merged.hparams)
    if merged.hf_source:  # export_hf then copies the Hugging Face base's tokenizer
        checkpoint["hf_source"] = merged.hf_source
    if hasattr(datamodule, "tokenizer_name"):  # as a fit run on that data records it
        checkpoint[type(datamodule).__qualname__] = datamodule.state_dict()
    with atomic_path(path) as tmp:  # an interrupted merge never leaves half a checkpoint
        torch.save(checkpoint, tmp)


def merged_config(adapter_config: str, hparams: dict) -> str:
    """The LoRA run's config (YAML) with the merged GPT as its model; the data's facts
    (vocabulary, context) stay linked from the data, as in any GPT config."""
    config = yaml.safe_load(adapter_config)
    init_args = {k: v for k, v in hparams.items() if k not in ("vocab_size", "block_size")}
    init_args = json.loads(json.dumps(init_args))  # tuples as lists, as YAML holds them
    config["model"] = {"class_path": "lit_models.GPT", "init_args": init_args}
    return yaml.safe_dump(config, sort_keys=False)


def load_adapter(model, ckpt_path: str) -> dict:
    """Load a LoRA checkpoint's adapter into `model` (checking its base reference) and return
    the checkpoint; a file that is not one is a UserError."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    state = checkpoint["state_dict"]
    if "lora_base" not in checkpoint:
        raise UserError(f"--ckpt_path {path}: not a LoRA adapter checkpoint (no base reference)")
    model.on_load_checkpoint(checkpoint)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise does_not_fit(path, err) from None
    return checkpoint
