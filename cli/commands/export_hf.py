"""`export_hf`: a GPT checkpoint as a Hugging Face model folder, which
`transformers.AutoModelForCausalLM.from_pretrained` loads with the same logits.

    python main.py export_hf --config configs/gpt_shakespeare_char.yaml --ckpt_path BEST.ckpt [--output DIR]
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from cli.checkpoints import load_weights
from core.errors import UserError
from core.files import atomic_folder


def export_hf(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None = None,
    output: str | None = None,
) -> str:
    """Write a GPT checkpoint as a Hugging Face model folder (config.json, model.safetensors):
    LlamaForCausalLM for norm=rmsnorm, positional=rope, mlp=swiglu (Qwen2ForCausalLM with
    attention_bias and no other biases), GPT2LMHeadModel for norm=layernorm, learned or
    sinusoidal positions and mlp=gelu or gelu_tanh. Beside it the tokenizer: the files of the
    Hugging Face folder the GPT came from (model.init_args.init_from), else the data's own tokenizer
    as transformers' (same ids; the chat corpus's template as its chat template).

    Args:
        ckpt_path: a GPT checkpoint (of fit, or merge_lora's merged.ckpt).
        output: the folder to write (replaced whole, atomically); by default
            <checkpoint name>_hf beside the checkpoint, in its run's folder.
    """
    from lit_models import GPT

    if not isinstance(model, GPT):
        hint = (
            " (merge a LoRA adapter first: `merge_lora`)" if "LoRA" in type(model).__name__ else ""
        )
        raise UserError(f"export_hf writes a GPT, not a {type(model).__name__}{hint}.")
    if not ckpt_path:
        raise UserError("export_hf: give the GPT checkpoint to write, --ckpt_path CHECKPOINT.ckpt")
    checkpoint = load_weights(model, ckpt_path)
    model.on_load_checkpoint(checkpoint)  # where its weights came from: the tokenizer's folder
    path = Path(output) if output else Path(ckpt_path).parent / f"{Path(ckpt_path).stem}_hf"
    write_hf_folder(model, path, datamodule)
    return str(path)


def write_hf_folder(gpt, path: Path, datamodule: L.LightningDataModule | None = None) -> None:
    """`gpt` as a Hugging Face folder at `path`, replaced whole and atomically (export_hf, and
    merge_lora --format hf), with the tokenizer its weights came with or the data's."""
    from lit_models.hf_convert import save_hf

    if path.exists() and not (path / "config.json").is_file():
        raise UserError(
            f"--output {path} exists and is not an exported model folder: give another --output."
        )
    data_tokenizer = getattr(datamodule, "transformers_tokenizer", None)
    with atomic_folder(path) as tmp:  # an interrupted export never leaves half a folder
        architecture = save_hf(gpt.cpu(), tmp, data_tokenizer() if data_tokenizer else None)
    tokenizer = (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()
    print(f"{architecture} written to {path}" + (" with its tokenizer" if tokenizer else ""))
    if not tokenizer:
        print("no tokenizer written beside it: the data of this config has none to export.")
