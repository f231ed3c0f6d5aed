"""Caches that heal: a damaged derived file (tokenizer, token ids, dedup report, aligned word
vectors) is reported by path, removed and built again, and the run goes on with the same data.

Each kind of corpus builds its cache once for the module; a test damages a copy."""

from __future__ import annotations

import gzip
import io
import itertools
import random
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checked_files import read_payload, unwrap
from core.errors import UserError
from datamodules import TinyShakespeareDataModule, WikiText2DataModule
from datamodules.multi30k import FILE_STEMS, Multi30kDataModule
from datamodules.sentiment import RTPolarityDataModule
from datamodules.word_vectors import save_word2vec_format
from lit_models.text_classifier import TextClassifier
from tests.conftest import SHARED_DATA, TINY_GPT, config, logged_metrics, need_corpus, run_cli


def halve(data: bytes) -> bytes:
    return data[: len(data) // 2]


def garbage(data: bytes) -> bytes:
    return random.Random(0).randbytes(len(data))


def flip_a_byte(data: bytes) -> bytes:
    """One bit wrong in the middle of the payload: the header is fine, the checksum is not
    (a token-id array would still load, with one wrong id)."""
    i = len(data) - len(unwrap(data)) // 2
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]


# damage: (what it does to the file's bytes, the reason reported for it, as a regex)
DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (halve, r"\d+ of \d+ bytes"),
    "emptied": (lambda data: b"", "empty"),
    "garbage": (garbage, "no checksum header"),
    "bit-flip": (flip_a_byte, "checksum mismatch"),
    "unchecked": (unwrap, "no checksum header"),  # the payload alone, as the old code wrote it
}


def damaged_warning(path: Path, damage: str) -> str:
    return rf"warning: cache file {re.escape(str(path))} is damaged \({DAMAGES[damage][1]}\); rebuilding it"


# --- the datamodules, and what each shows its model ----------------------------------------
def tiny_multi30k(folder: Path) -> None:
    """The first lines of the real Multi30k files, same layout: the cache builds in a blink."""
    (folder / "multi30k").mkdir()
    source = need_corpus("multi30k")
    for split, stem in FILE_STEMS.items():
        for lang in ("de", "en"):
            with gzip.open(source / f"{stem}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(400 if split == "train" else 40)]
            (folder / "multi30k" / f"{stem}.{lang}").write_text("".join(lines), encoding="utf-8")


def word_vectors(folder: Path) -> None:
    words = ["film", "good", "bad", "movie", "the"]
    save_word2vec_format(folder / "w2v.txt", words, torch.arange(20.0).view(5, 4))


def lm_seen(dm) -> dict:
    """What a language model sees: the token ids of each split, the vocabulary size and the
    dedup report."""
    seen = {"vocab_size": dm.vocab_size, "dedup_report": dm.dedup_report}
    for split in ("train", "val", "test"):
        e = dm.encoded(split)
        seen[split] = (e.ids.tolist(), e.words.tolist(), e.chars.tolist())
    return seen


def translation_seen(dm) -> dict:
    seen = {"vocab_size": dm.vocab_size}
    for split in ("train", "val", "test"):
        p = dm.pairs(split)
        seen[split] = (list(map(list, p.source_ids)), list(map(list, p.target_ids)))
    return seen


def vectors_seen(dm) -> dict:
    """The aligned vectors the classifier copies into its embedding (read as it reads them)."""
    aligned = torch.load(io.BytesIO(read_payload(dm.pretrained_embeddings)), weights_only=True)
    return {k: v.tolist() for k, v in aligned.items()}


# name: (make(cache_dir, folder), what the model sees, the cached files to damage); `folder`
# holds the kind's own inputs, written once by INPUTS.
KINDS = {
    "shakespeare-char": (
        lambda cache, folder: TinyShakespeareDataModule(
            data_dir=str(need_corpus("tinyshakespeare")), block_size=8, cache_dir=cache
        ),
        lm_seen,
        ["val-00000.tokens", "tokenizer.json"],
    ),
    "shakespeare-bpe": (
        lambda cache, folder: TinyShakespeareDataModule(
            data_dir=str(need_corpus("tinyshakespeare")),
            tokenizer="bpe",
            bpe_vocab_size=300,
            block_size=8,
            cache_dir=cache,
        ),
        lm_seen,
        ["tokenizer.json"],
    ),
    "wikitext-word-dedup": (
        lambda cache, folder: WikiText2DataModule(
            data_dir=str(need_corpus("wikitext-2-mini")), block_size=8, dedup=True, cache_dir=cache
        ),
        lm_seen,
        ["val-00000.tokens", "tokenizer.json", "dedup.json"],
    ),
    "multi30k-word": (
        lambda cache, folder: Multi30kDataModule(
            data_dir=str(folder / "multi30k"), min_freq=1, cache_dir=cache
        ),
        translation_seen,
        ["train.npz", "tokenizer.json"],
    ),
    "rt-polarity-vectors": (
        lambda cache, folder: RTPolarityDataModule(
            data_dir=str(need_corpus("rt-polarity")),
            word_vectors=str(folder / "w2v.txt"),
            cache_dir=cache,
        ),
        vectors_seen,
        ["word-vectors.pt"],
    ),
}
INPUTS = {"multi30k-word": tiny_multi30k, "rt-polarity-vectors": word_vectors}
CASES = [(kind, name) for kind, (_, _, names) in KINDS.items() for name in names]


def ready(dm):
    """The datamodule after Lightning's hooks (and the vectors the CLI links to the model)."""
    dm.prepare_data()
    dm.setup("fit")
    if getattr(dm, "word_vectors", None) is not None:
        dm.pretrained_embeddings  # noqa: B018 - aligns (or loads) the vectors
    return dm


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Callable[[str], tuple[Path, dict]]:
    """kind -> (its folder: inputs, and the cache built once in `cache/`; what the model saw)."""
    done = {}

    def build(kind: str) -> tuple[Path, dict]:
        if kind not in done:
            make, seen, _ = KINDS[kind]
            folder = tmp_path_factory.mktemp(kind)
            INPUTS.get(kind, lambda folder: None)(folder)
            done[kind] = (folder, seen(ready(make(str(folder / "cache"), folder))))
        return done[kind]

    return build


def the_file(folder: Path, name: str) -> Path:
    (path,) = folder.rglob(name)
    return path


def loaded(path: Path):
    """A cached file's content: arrays and tensors as lists (npz and torch zips carry
    timestamps), other files as bytes."""
    payload = unwrap(path.read_bytes())
    if path.suffix == ".npz":
        with np.load(io.BytesIO(payload)) as f:
            return {k: f[k].tolist() for k in f.files}
    if path.suffix == ".pt":
        return {
            k: v.tolist() for k, v in torch.load(io.BytesIO(payload), weights_only=True).items()
        }
    return payload


# --- the damage matrix ---------------------------------------------------------------------
# Every kind of cached file, and every damage, each at least once: the damages cycle over the
# files. (The header is checked before any file is parsed, the same way for every kind, so
# the full product, 5 x 9 rebuilds, would test the same path five times over.)
DAMAGED_FILES = [
    (kind, name, damage) for (kind, name), damage in zip(CASES, itertools.cycle(DAMAGES))
]


@pytest.mark.parametrize(("kind", "name", "damage"), DAMAGED_FILES)
def test_a_damaged_cache_file_is_reported_and_rebuilt(built, tmp_path, capsys, kind, name, damage):
    data, seen_before = built(kind)
    cache = tmp_path / "cache"
    shutil.copytree(data / "cache", cache)
    path = the_file(cache, name)
    original = loaded(path)
    path.write_bytes(DAMAGES[damage][0](path.read_bytes()))
    capsys.readouterr()

    make, seen, _ = KINDS[kind]
    dm = ready(make(str(cache), data))
    assert seen(dm) == seen_before  # the model sees the same data

    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and re.fullmatch(damaged_warning(path, damage), warnings[0])
    assert loaded(path) == original  # the rebuilt file holds what the first build wrote
    # The next run reads the rebuilt file quietly.
    ready(make(str(cache), data))
    assert "warning" not in capsys.readouterr().err


# --- through the CLI: the run goes on and trains on the same data ---------------------------
FIT = [
    "fit",
    "--config",
    config("gpt_shakespeare_char.yaml"),
    *TINY_GPT,
    "--trainer.max_steps=2",
    "--trainer.val_check_interval=2",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
]


@pytest.fixture(scope="module")
def clean_fit(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """(the cache, the metrics) of a tiny fit on Tiny Shakespeare that built its cache."""
    need_corpus("tinyshakespeare")
    folder = tmp_path_factory.mktemp("clean_fit")
    # Module scope: set here what the per-test environment would (conftest._isolated_env).
    env = {"XDG_CACHE_HOME": str(folder / "cache"), "DATA_DIR": str(SHARED_DATA)}
    run_cli(*FIT, cwd=folder, env={**env, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"})
    return folder / "cache", logged_metrics(folder / "csv")


@pytest.mark.parametrize(
    ("damage", "name"),
    [
        ("truncated", "train-00000.tokens"),
        ("emptied", "tokenizer.json"),
        ("garbage", "val-00000.tokens"),
    ],
)
def test_fit_on_a_damaged_cache_warns_once_and_trains_on_the_same_data(
    clean_fit, tmp_path, damage, name
):
    clean_cache, metrics = clean_fit
    shutil.copytree(clean_cache, tmp_path / "cache")
    path = the_file(tmp_path / "cache", name)
    original = loaded(path)
    path.write_bytes(DAMAGES[damage][0](path.read_bytes()))

    proc = run_cli(*FIT, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})  # exit 0, or raises
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and re.fullmatch(damaged_warning(path, damage), warnings[0])
    assert loaded(path) == original
    assert logged_metrics(tmp_path / "csv") == metrics  # same ids, same losses


# --- a cache folder that cannot be written, two builders repairing one file ----------------
def test_a_cache_folder_that_cannot_be_written_costs_only_the_rebuild(built, tmp_path, capsys):
    _, seen_before = built("shakespeare-char")
    blocked = tmp_path / "a-file"  # where the cache folder should go: mkdir fails, even as root
    blocked.write_text("not a folder")
    make, seen, _ = KINDS["shakespeare-char"]
    capsys.readouterr()
    assert seen(ready(make(str(blocked / "cache"), tmp_path))) == seen_before
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 4  # train/val/test ids and the tokenizer, each named once
    assert all(w.startswith(f"warning: cannot write cache file {blocked}/") for w in warnings)

    # The word vectors are a file the model reads: without it, say so and how to fix it.
    folder, _ = built("rt-polarity-vectors")
    vectors = KINDS["rt-polarity-vectors"][0](str(blocked / "cache"), folder)
    with pytest.raises(UserError, match="cannot write the aligned word vectors .*cache_dir"):
        vectors.pretrained_embeddings  # noqa: B018


def test_two_builders_repairing_one_file_at_once_both_get_the_data(tmp_path, capsys):
    """Both find the file damaged, rebuild it and rename their copy onto it (neither removes
    the other's whole file): each reads the same ids, and the file left is whole. Threads,
    not processes: the same file operations race, without a second interpreter's start."""
    (tmp_path / "input.txt").write_text("".join(f"line {i}\n" for i in range(500)))
    kwargs = {"data_dir": str(tmp_path), "block_size": 8, "tokenizer": "bpe", "bpe_vocab_size": 300}
    dm = TinyShakespeareDataModule(**kwargs)
    dm.prepare_data()
    path, ids = dm.cache.path("train-00000.tokens"), dm.encoded("train").ids.tolist()
    original = loaded(path)
    path.write_bytes(garbage(path.read_bytes()))
    capsys.readouterr()

    def build() -> list[int]:
        other = TinyShakespeareDataModule(**kwargs)
        other.prepare_data()
        return other.encoded("train").ids.tolist()

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda _: build(), range(2))) == [ids, ids]
    found = f"warning: cache file {path} is damaged (no checksum header); rebuilding it"
    warnings = capsys.readouterr().err.splitlines()
    assert warnings in ([found], [found, found])  # the later one may find it rebuilt
    assert loaded(path) == original
    assert not list(path.parent.glob(".*.tmp"))


def test_a_classifier_given_damaged_vectors_keeps_its_random_init(built, tmp_path):
    """The model reads the aligned vectors itself (a checkpoint's path, the datamodule not
    there to check it first): a damaged file is a warning, as a missing one is."""
    folder, seen_before = built("rt-polarity-vectors")
    path = tmp_path / "word-vectors.pt"
    path.write_bytes(halve(the_file(folder / "cache", "word-vectors.pt").read_bytes()))
    n_words, n_embd = len(seen_before["found"]), len(seen_before["vectors"][0])
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))} are damaged \(\d+ of \d+ bytes"):
        TextClassifier(vocab_size=n_words, n_embd=n_embd, pretrained_embeddings=str(path))
