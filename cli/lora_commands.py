"""Subcommands of LoRA fine-tuning and chat, mixed into the suite's Trainer:

- `merge_lora`: fold a LoRA adapter into its base and write a plain GPT checkpoint.
- `chat`: answer prompts (or an interactive loop) in the chat template, with the shared
  decoding module.

    python main.py merge_lora --config configs/gpt_lora_chat.yaml --ckpt_path ADAPTER.ckpt --output merged.ckpt
    python main.py chat --config configs/gpt_lora_chat.yaml --ckpt_path ADAPTER.ckpt --prompt "Hello"
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from cli.checkpoints import load_weights
from core.errors import UserError
from core.files import atomic_path
from lit_models.modules.decoding import generate_text


class LoRACommands:
    """Trainer methods; the CLI passes them the model and datamodule built from the config."""

    def merge_lora(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule,
        ckpt_path: str | None = None,
        output: str = "merged.ckpt",
    ) -> str:
        """Fold a LoRA adapter into its base GPT (W + alpha/r B A) and write a plain GPT
        checkpoint, loadable by `GPT.load_from_checkpoint` and by test / generate with a GPT
        config.

        Args:
            ckpt_path: the adapter checkpoint of a LoRA run (its base is found from it).
            output: where the merged GPT checkpoint goes (written atomically).
        """
        from lit_models.lora import LoRAGPT

        if not isinstance(model, LoRAGPT):
            raise UserError(
                f"merge_lora needs a LoRA config (model: lit_models.lora.LoRAGPT), not {type(model).__name__}."
            )
        if not ckpt_path:
            raise UserError("merge_lora: give the adapter checkpoint, --ckpt_path ADAPTER.ckpt")
        adapter = load_adapter(model, ckpt_path)
        if model.hparams.quantize != "none":  # fold into full-precision weights, on the CPU
            model = LoRAGPT(**{**model.hparams, "quantize": "none"})
            model.load_state_dict({k: v.cpu() for k, v in adapter.items()})
        merged = model.cpu().merged_gpt()
        checkpoint = {
            "pytorch-lightning_version": L.__version__,
            "epoch": 0,
            "global_step": 0,
            "state_dict": merged.state_dict(),
            "hyper_parameters": {**merged.hparams, "_class_path": "lit_models.GPT"},
            "lora_merged": {
                "adapter": str(Path(ckpt_path).resolve()),
                "base": str(Path(model.hparams.base_checkpoint).resolve()),
                "base_sha256": model.hparams.base_sha256,
            },
        }
        if hasattr(datamodule, "tokenizer_name"):  # as a fit run on that data records it
            checkpoint[type(datamodule).__qualname__] = datamodule.state_dict()
        path = Path(output)
        with atomic_path(path) as tmp:  # an interrupted merge never leaves half a checkpoint
            torch.save(checkpoint, tmp)
        trainable, total = model.parameter_counts()
        print(
            f"merged the adapter ({trainable:,} parameters) into {model.hparams.base_checkpoint}: "
            f"{path} (a plain GPT, {merged.num_parameters():,} parameters)"
        )
        return str(path)

    def chat(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule,
        ckpt_path: str | None = None,
        prompt: str | list[str] | None = None,
        max_new_tokens: int = 200,
        strategy: str = "sample",
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        repetition_penalty: float = 1.0,
        seed: int | None = 1337,
    ) -> list[str]:
        """Answer prompts with a chat model: each prompt is wrapped in the chat template and
        the answer runs to <|endoftext|>. Without --prompt, an interactive loop (one turn at
        a time; an empty line, `exit` or end of input quits).

        Args:
            ckpt_path: the checkpoint to answer with (a LoRA adapter or a GPT).
            prompt: what the user says; several: `--prompt+ A --prompt+ B`.
            strategy: greedy or sample.
            temperature, top_k, top_p, repetition_penalty, seed: for `sample`.
        """
        if not hasattr(datamodule, "format_prompt"):
            raise UserError(
                f"chat needs a chat corpus (data: datamodules.chat.ChatDataModule), not {type(datamodule).__name__}."
            )
        if strategy not in ("greedy", "sample"):
            raise UserError(f"--strategy {strategy}: chat answers with greedy or sample")
        if ckpt_path:
            load_weights(model, ckpt_path)
        model.to(self.strategy.root_device)
        options = {
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "repetition_penalty": repetition_penalty,
            "seed": seed,
        }

        def answer(text: str) -> str:
            try:
                (reply,) = generate_text(
                    model,
                    [datamodule.format_prompt(text)],
                    datamodule,
                    max_new_tokens,
                    strategy,
                    stop=["<|user|>"],
                    **options,
                )
            except ValueError as err:
                raise UserError(str(err)) from None
            return reply.strip()

        if isinstance(prompt, str):
            prompt = [prompt]
        if prompt:
            answers = [answer(p.replace("\\n", "\n")) for p in prompt]
            for p, a in zip(prompt, answers, strict=True):
                print(f"user: {p}\nassistant: {a}")
            return answers
        answers = []
        print("chat: type a message (an empty line or `exit` ends)")
        while True:
            try:
                line = input("user: ")
            except EOFError:
                break
            if line.strip() in ("", "exit", "quit"):
                break
            answers.append(answer(line))
            print(f"assistant: {answers[-1]}", flush=True)
        return answers


def load_adapter(model, ckpt_path: str) -> dict[str, torch.Tensor]:
    """Load a LoRA checkpoint's adapter into `model` (checking its base reference) and return
    the adapter tensors; a file that is not one is a UserError."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
    except Exception as err:
        raise UserError(
            f"--ckpt_path {path}: not a readable checkpoint ({type(err).__name__})"
        ) from None
    if "lora_base" not in checkpoint:
        raise UserError(f"--ckpt_path {path}: not a LoRA adapter checkpoint (no base reference)")
    model.on_load_checkpoint(checkpoint)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(
            f"--ckpt_path {path}: does not fit this LoRA config ({str(err).splitlines()[0]}); "
            f"use the config it was trained with."
        ) from None
    return state
