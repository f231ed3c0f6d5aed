"""`translate`: from a checkpoint and source sentences to translations (greedy or beam search).

python main.py translate --config configs/seq2seq_attention_multi30k.yaml --ckpt_path BEST.ckpt --text "Ein Hund läuft."
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from cli.checkpoints import load_weights
from core.errors import UserError
from core.files import atomic_write_text


def translate(
    trainer: L.Trainer,
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
    sentences = read_sentences(text, input_file)
    sources = encode_sentences(sentences, datamodule, model.hparams.get("block_size"))
    if ckpt_path:
        load_weights(model, ckpt_path)
    model.to(trainer.strategy.root_device)
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
        atomic_write_text(Path(output_file), "".join(f"{line}\n" for line in translations))
    return translations


def read_sentences(text: str | list[str] | None, input_file: str | None) -> list[tuple[str, str]]:
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


def encode_sentences(
    sentences: list[tuple[str, str]], datamodule, block_size: int | None
) -> list[list[int]]:
    """Source ids (+ <eos>) of each sentence. An empty sentence, or one with no word the
    vocabulary knows (another language?), is an error that names it; a few unknown words
    become <unk> (the datamodule's `unk_id`; said on stderr); a sentence longer than the
    model's block_size is cut to it, as the corpus's validation and test sentences are."""
    sources = []
    for where, sentence in sentences:
        if not sentence.strip():
            raise UserError(f"{where}: empty sentence (remove the line or write a sentence)")
        try:
            ids = list(datamodule.encode_source(sentence, truncate=False))  # cut below, said
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        unknown = ids.count(datamodule.unk_id)
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
