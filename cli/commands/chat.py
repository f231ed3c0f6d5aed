"""`chat`: answer prompts (or an interactive loop) in the data's chat template (a pretrained
tokenizer's own, or the suite's byte template), with the shared decoding module.

    python main.py chat --config configs/gpt_lora_chat.yaml --ckpt_path ADAPTER.ckpt --prompt "Hello"
"""

from __future__ import annotations

from typing import Literal

import lightning as L

from cli.checkpoints import load_weights
from core.errors import UserError
from lit_models.modules.decoding import generate_text


def chat(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None = None,
    prompt: str | list[str] | None = None,
    max_new_tokens: int = 200,
    strategy: Literal["greedy", "sample"] = "sample",
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = 0.95,
    repetition_penalty: float = 1.0,
    seed: int | None = 1337,
) -> list[str]:
    """Answer prompts with a chat model: each prompt is wrapped in the data's chat template
    (with `tokenizer: pretrained`, the tokenizer's own) and the answer runs to the end of the
    assistant's turn (<|endoftext|>, or the template's own, such as <|im_end|>). Without
    --prompt, an interactive loop (one turn at a time; an empty line, `exit` or end of input
    quits).

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
    if ckpt_path:
        load_weights(model, ckpt_path)
    model.to(trainer.strategy.root_device)
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
                stop=datamodule.stop_strings,
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
