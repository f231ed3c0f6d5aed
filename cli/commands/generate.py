"""`generate`: from a checkpoint and prompts to text, with the shared decoding module.

python main.py generate --config configs/gpt_shakespeare_char.yaml --ckpt_path LAST.ckpt --prompt "ROMEO:"
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from cli.checkpoints import load_weights
from core.errors import UserError
from lit_models.modules.decoding import Strategy, generate_text, generate_text_beam_search


def generate(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None = None,
    prompt: str | list[str] | None = None,
    prompt_file: str | None = None,
    max_new_tokens: int = 200,
    strategy: Strategy = "sample",
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = 0.95,
    repetition_penalty: float = 1.0,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    n_best: int = 1,
    stop: list[str] | None = None,
    seed: int | None = 1337,
) -> list[str]:
    """Continue prompts with a trained model and print the text.

    Args:
        ckpt_path: the checkpoint to generate from (without it: the untrained model).
        prompt: a prompt, or several (`--prompt A --prompt B`, answered in one batch);
            `\\n` in it stands for a newline.
        prompt_file: a file with one prompt per line (`\\n` stands for a newline).
        strategy: greedy, sample or beam.
        temperature, top_k, top_p, repetition_penalty, seed: for `sample`.
        num_beams, length_penalty, n_best: for `beam` (n_best continuations with scores).
        stop: strings that end a continuation.
    """
    prompts = read_prompts(prompt, prompt_file)
    if ckpt_path:
        load_weights(model, ckpt_path)
    model.to(trainer.strategy.root_device)
    try:
        if strategy == "beam":
            results = []
            for p in prompts:
                best = generate_text_beam_search(
                    model,
                    p,
                    datamodule,
                    num_beams,
                    max_new_tokens,
                    length_penalty,
                    n_best,
                    stop=stop,
                )
                results += [f"{p}{text}\n[beam score {score:.4f}]" for text, score in best]
        else:
            sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
            sampling.update(repetition_penalty=repetition_penalty, seed=seed)
            texts = generate_text(
                model, prompts, datamodule, max_new_tokens, strategy, stop=stop, **sampling
            )
            results = [p + t for p, t in zip(prompts, texts, strict=True)]
    except ValueError as err:  # bad option or prompt: say so plainly
        raise UserError(str(err)) from None
    for text in results:
        print(text)
        print("-" * 40)
    return results


def read_prompts(prompt: str | list[str] | None, prompt_file: str | None) -> list[str]:
    """The prompts, then the file's non-empty lines, each with `\\n` read as a newline."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
    if prompt_file:
        path = Path(prompt_file)
        if not path.is_file():
            raise UserError(f"--prompt_file {path}: no such file")
        prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not prompts:
        raise UserError("give a prompt: --prompt TEXT or --prompt_file FILE (one prompt per line)")
    return [p.replace("\\n", "\n") for p in prompts]
