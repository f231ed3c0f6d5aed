"""Lightning's Trainer with the suite's defaults and more subcommands.

- `precision: auto`: bf16 mixed precision on GPUs that support it, fp16 mixed on older GPUs,
  full fp32 on the CPU (where bf16 matrix products run about 100x slower than fp32).
- `generate`: from a checkpoint and prompts to text, with the shared decoding module.
- `translate`: from a checkpoint and source sentences to translations (greedy or beam search).
- `lr_find`: Lightning's learning-rate range test, saved as a loss-vs-lr plot.
- `export_vectors` (cli/word2vec_commands.py): word2vec vectors in the word2vec text format.
- `merge_lora`, `chat` (cli/lora_commands.py): fold a LoRA adapter into its base GPT; answer
  prompts from a chat model.

The CLI turns each Trainer method into a subcommand, its arguments into options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from cli.checkpoints import load_weights
from cli.lora_commands import LoRACommands
from cli.word2vec_commands import Word2VecCommands
from core.errors import UserError
from core.files import atomic_path, atomic_write_text
from lit_models.modules.decoding import generate_text, generate_text_beam_search

UNK_ID = 3  # <pad> 0, <bos> 1, <eos> 2, <unk> 3: fixed for every translation corpus


def resolve_precision(precision, accelerator="auto"):
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class Trainer(LoRACommands, Word2VecCommands, L.Trainer):
    def __init__(
        self,
        *args,
        precision: str | int | None = "auto",
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        **kwargs,
    ):
        """
        Args:
            precision: `auto` (bf16-mixed on recent GPUs, 16-mixed on older ones, 32-true on
                CPU) or any value Lightning accepts: 32-true, 16-mixed, bf16-mixed, 64-true, ...
            limit_train_batches, limit_val_batches, limit_test_batches, limit_predict_batches:
                an int is a number of batches, a float a fraction (1 is one batch, 1.0 all).
                Declared here because the CLI reads Lightning's own declaration of them as
                floats, turning `--trainer.limit_val_batches=1` into 1.0, every batch.
        """
        super().__init__(
            *args,
            precision=resolve_precision(precision, kwargs.get("accelerator", "auto")),
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )

    def generate(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule,
        ckpt_path: str | None = None,
        prompt: str | None = None,
        prompt_file: str | None = None,
        max_new_tokens: int = 200,
        strategy: str = "sample",
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
            prompt: one prompt; `\\n` in it stands for a newline.
            prompt_file: a file with one prompt per line (`\\n` stands for a newline).
            strategy: greedy, sample or beam.
            temperature, top_k, top_p, repetition_penalty, seed: for `sample`.
            num_beams, length_penalty, n_best: for `beam` (n_best continuations with scores).
            stop: strings that end a continuation.
        """
        prompts = _read_prompts(prompt, prompt_file)
        if ckpt_path:
            load_weights(model, ckpt_path)
        model.to(self.strategy.root_device)
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

    def translate(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule,
        ckpt_path: str | None = None,
        text: str | list[str] | None = None,
        input_file: str | None = None,
        output_file: str | None = None,
        num_beams: int = 5,
        length_penalty: float = 1.0,
        max_new_tokens: int | None = None,
        batch_size: int = 32,
    ) -> list[str]:
        """Translate sentences with a trained translator and print one translation a line.

        Args:
            ckpt_path: the checkpoint to translate with (without it: the untrained model).
            text: a sentence, or several: `--text+ A --text+ B` or `--text '["A", "B"]'`.
            input_file: a file with one source sentence a line (UTF-8).
            output_file: also write the translations there, one a line (atomically).
            num_beams: 1 is greedy decoding, more is beam search.
            length_penalty: beam search ranks hypotheses by log-probability / length**this.
            max_new_tokens: the longest translation in tokens (None: the model's default).
            batch_size: sentences decoded together.
        """
        if not hasattr(model, "translate_ids") or not hasattr(datamodule, "encode_source"):
            raise UserError(
                f"translate needs a translator and a translation corpus, not "
                f"{type(model).__name__} on {type(datamodule).__name__} (see configs/*multi30k*.yaml)"
            )
        if num_beams < 1:
            raise UserError(f"--num_beams {num_beams}: must be 1 (greedy) or more (beam search)")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise UserError(f"--max_new_tokens {max_new_tokens}: must be at least 1")
        sentences = _read_sentences(text, input_file)
        sources = _encode_sentences(sentences, datamodule, model.hparams.get("block_size"))
        if ckpt_path:
            load_weights(model, ckpt_path)
        model.to(self.strategy.root_device)
        model.eval()
        translations = []
        with torch.no_grad():
            for start in range(0, len(sources), batch_size):
                ids = model.translate_ids(
                    sources[start : start + batch_size],
                    num_beams=num_beams,
                    length_penalty=length_penalty,
                    max_new_tokens=max_new_tokens,
                )
                translations += [datamodule.decode(list(t)) for t in ids]
        for translation in translations:
            print(translation)
        if output_file:
            _write_lines_atomic(Path(output_file), translations)
        return translations

    def lr_find(
        self,
        model: L.LightningModule,
        datamodule: L.LightningDataModule,
        min_lr: float = 1e-3,
        max_lr: float = 1.0,
        num_training: int = 100,
        early_stop_threshold: float | None = 4.0,
        plot: str = "lr_find.png",
    ) -> float | None:
        """Sweep the learning rate log-uniformly from min_lr to max_lr over num_training steps
        (Lightning's Tuner), save the loss-vs-lr plot and print the suggested value.

        Args:
            early_stop_threshold: stop when the loss exceeds this many times the best (None: never).
            plot: where the PNG goes.
        """
        from lightning.pytorch.tuner import Tuner

        finder = Tuner(self).lr_find(
            model,
            datamodule=datamodule,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=num_training,
            early_stop_threshold=early_stop_threshold,
            update_attr=False,
        )
        finder.results["loss"] = _redebias(finder.results["loss"])
        suggestion = finder.suggestion()
        figure = finder.plot(suggest=suggestion is not None)
        figure.axes[0].set_title(
            f"{type(model).__name__}: suggested lr {suggestion:.3g}"
            if suggestion
            else "no suggestion"
        )
        path = Path(plot)
        with atomic_path(path) as tmp:  # an interrupted run never leaves half a picture
            figure.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
        for logger in self.loggers:
            if suggestion is not None:
                logger.log_metrics({"lr_find/suggestion": suggestion})
        print(
            f"lr_find: suggested learning rate {suggestion:.4g}"
            if suggestion
            else "lr_find: no suggestion (too few steps?)"
        )
        print(f"lr_find: plot saved to {path}")
        return suggestion


def _redebias(losses: list[float], beta: float = 0.98) -> list[float]:
    """Lightning's LR finder (2.x, `_LRCallback`, beta 0.98) debiases its running average of
    the loss with `global_step`, which already counts the step just taken: point i is divided
    by 1 - beta**(i+2) instead of 1 - beta**(i+1), so the first points read far too low (half
    the true loss at the first). Undo that exactly."""
    return [loss * (1 - beta ** (i + 2)) / (1 - beta ** (i + 1)) for i, loss in enumerate(losses)]


def _read_prompts(prompt: str | None, prompt_file: str | None) -> list[str]:
    prompts = [prompt] if prompt is not None else []
    if prompt_file:
        path = Path(prompt_file)
        if not path.is_file():
            raise UserError(f"--prompt_file {path}: no such file")
        prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not prompts:
        raise UserError("give a prompt: --prompt TEXT or --prompt_file FILE (one prompt per line)")
    return [p.replace("\\n", "\n") for p in prompts]


def _read_sentences(text: str | list[str] | None, input_file: str | None) -> list[tuple[str, str]]:
    """(where, sentence) pairs, `where` naming the option or the file and line for errors."""
    texts = [text] if isinstance(text, str) else list(text or [])
    sentences = [(f"--text {i + 1}", t) for i, t in enumerate(texts)]
    if input_file:
        path = Path(input_file)
        if not path.is_file():
            raise UserError(f"--input_file {path}: no such file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise UserError(f"--input_file {path}: not UTF-8 text ({err})") from None
        sentences += [(f"{path}, line {n}", line) for n, line in enumerate(lines, start=1)]
    if not sentences:
        raise UserError(
            "give sentences to translate: --text TEXT or --input_file FILE (one sentence a line)"
        )
    return sentences


def _encode_sentences(
    sentences: list[tuple[str, str]], datamodule, block_size: int | None
) -> list[list[int]]:
    """Source ids (+ <eos>) of each sentence. An empty sentence, or one with no word the
    vocabulary knows (another language?), is an error that names it; a few unknown words
    become <unk> (said on stderr); a sentence longer than the model's block_size is cut to
    it, as the corpus's validation and test sentences are."""
    sources = []
    for where, sentence in sentences:
        if not sentence.strip():
            raise UserError(f"{where}: empty sentence (remove the line or write a sentence)")
        try:
            ids = list(datamodule.encode_source(sentence, truncate=False))  # cut below, said
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        unknown = ids.count(UNK_ID)
        if unknown and unknown == len(ids) - 1:  # every token but <eos>
            language = getattr(datamodule, "source_lang", "the source language")
            raise UserError(
                f"{where}: no word of {sentence!r} is in the vocabulary; is it {language}?"
            )
        if unknown:
            print(
                f"note: {where}: {unknown} token(s) outside the vocabulary, read as <unk>",
                file=sys.stderr,
            )
        if block_size and len(ids) > block_size:
            print(
                f"note: {where}: {len(ids)} tokens, cut to the model's block_size {block_size}",
                file=sys.stderr,
            )
            ids = ids[: block_size - 1] + ids[-1:]  # keep the closing <eos>
        sources.append(ids)
    return sources


def _write_lines_atomic(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
