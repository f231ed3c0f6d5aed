"""Tokenizers and the language-modelling datamodules, on the shared corpora and on small files
made here. Caches go to the per-test XDG_CACHE_HOME that conftest sets."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.language_modeling as lm
from core.constants import IGNORE_INDEX as IGNORE
from core.constants import SPLITS
from core.errors import DataError, UserError
from datamodules import TinyShakespeareDataModule, WikiText2DataModule
from datamodules.language_modeling import OrderedBlocks, RandomWindows
from datamodules.tokenizers import EOS, UNK, EncodedSplit, Tokenizer, encode_lines, train_tokenizer
from datamodules.wikitext2 import FILE_SPLITS
from lit_models.metrics import LanguageModelMetrics
from tests.conftest import config, run_cli

TEXT = (
    "Café au lait — naïve façade\n"
    "日本語 テキスト 🙂 ok\n"
    "  leading and  trailing spaces  \n"
    "\n"
    "\ttabs\there\r\n"
    "«Ünïcødé» ends without a newline"
)


# --- tokenizers ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["word", "bpe", "char"])
def test_encode_lines_counts_words_and_characters(kind):
    lines = TEXT.splitlines(keepends=True)
    tok = train_tokenizer(kind, lines, bpe_vocab_size=300)
    enc = encode_lines(tok, lines)
    assert len(enc.ids) == len(enc.words) == len(enc.chars) > 0
    # Whitespace-separated words plus one end-of-line word per newline, whatever the tokens.
    assert int(enc.words.sum()) == len(TEXT.split()) + TEXT.count("\n")
    assert int(enc.chars.sum()) == len(TEXT)
    # Per line too: a token never carries counts over from another line.
    for line in lines:
        one = encode_lines(tok, [line])
        assert int(one.chars.sum()) == len(line)
        assert int(one.words.sum()) == len(line.split()) + line.count("\n")


def test_char_counts_per_token_are_one_for_characters():
    lines = TEXT.splitlines(keepends=True)
    enc = encode_lines(train_tokenizer("char", lines), lines)
    assert len(enc.ids) == len(TEXT)
    assert (enc.chars == 1).all()


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_decode_inverts_encode(kind):
    tok = train_tokenizer(kind, TEXT.splitlines(keepends=True), bpe_vocab_size=300)
    for text in (TEXT, "naïve 🙂\n\n  ok", " "):  # characters seen in training
        assert tok.decode(tok.encode(text)) == text


def test_char_tokenizer_maps_unseen_characters_to_unk():
    tok = train_tokenizer("char", ["abc\n"])
    enc = encode_lines(tok, ["aé\n"])
    assert enc.ids.tolist() == [tok.token_to_id("a"), tok.token_to_id(UNK), tok.token_to_id("\n")]
    assert enc.chars.tolist() == [1, 1, 1]


def test_word_tokenizer_ends_every_line_with_eos():
    lines = ["the cat\n", "\n", "sat <unk> down\n"]
    tok = train_tokenizer("word", lines)
    enc = encode_lines(tok, lines)
    eos, unk = tok.token_to_id(EOS), tok.token_to_id(UNK)
    assert enc.ids.tolist() == [
        tok.token_to_id("the"),
        tok.token_to_id("cat"),
        eos,
        eos,
        tok.token_to_id("sat"),
        unk,
        tok.token_to_id("down"),
        eos,
    ]
    assert enc.words.tolist() == [1] * 8


# --- OrderedBlocks and RandomWindows -------------------------------------------------------
def _split(n: int) -> EncodedSplit:
    return EncodedSplit(
        np.arange(n, dtype=np.int64) + 7, np.ones(n, np.uint8), np.full(n, 2, np.uint16)
    )


def _check_ordered_blocks(
    split: EncodedSplit, block_size: int, world_size: int = 1
) -> OrderedBlocks:
    blocks = OrderedBlocks(split, block_size, world_size)
    items = [blocks[i] for i in range(len(blocks))]
    real = [item["targets"][item["targets"] != IGNORE] for item in items]
    # Every token but the first is predicted exactly once, in order.
    np.testing.assert_array_equal(torch.cat(real).numpy(), split.ids[1:])
    for item in items:
        targets, pad = item["targets"], item["targets"] == IGNORE
        assert targets.shape == item["input_ids"].shape == (block_size,)
        n = int((~pad).sum())
        assert not pad[:n].any() and pad[n:].all()  # padding only at the tail
        # Inputs are the tokens just before the targets; counts are zero at padding.
        np.testing.assert_array_equal(
            item["input_ids"][1:n].numpy(), targets[: max(0, n - 1)].numpy()
        )
        assert (item["target_words"][pad] == 0).all() and (item["target_chars"][pad] == 0).all()
    np.testing.assert_array_equal(
        torch.cat([i["input_ids"][i["targets"] != IGNORE] for i in items]).numpy(), split.ids[:-1]
    )
    assert len(blocks) % world_size == 0
    return blocks


@pytest.mark.parametrize("n", [1, 2, 16, 17, 18, 40])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ordered_blocks_on_small_splits(n, world_size):
    blocks = _check_ordered_blocks(_split(n), block_size=8, world_size=world_size)
    n_real = max(1, math.ceil((n - 1) / 8))
    assert n_real <= len(blocks) < n_real + world_size  # no more padding blocks than needed


def test_ordered_blocks_on_wikitext(wikitext_dir):
    dm = WikiText2DataModule(data_dir=str(wikitext_dir), block_size=64)
    valid = dm.encoded("val")
    single = _check_ordered_blocks(valid, 64)
    n_real = math.ceil((len(valid) - 1) / 64)
    assert len(single) == n_real
    # With two ranks the count is even; the block added to make it so is all padding.
    block_size = next(t for t in range(64, 200) if math.ceil((len(valid) - 1) / t) % 2 == 1)
    double = _check_ordered_blocks(valid, block_size, world_size=2)
    assert len(double) == math.ceil((len(valid) - 1) / block_size) + 1
    extra = double[len(double) - 1]
    assert (extra["targets"] == IGNORE).all()
    assert extra["target_words"].sum() == 0 and extra["target_chars"].sum() == 0


def test_random_windows_targets_are_inputs_shifted(wikitext_dir):
    dm = WikiText2DataModule(data_dir=str(wikitext_dir), block_size=32, batch_size=4)
    dm.setup("fit")
    ids = dm.encoded("train").ids
    windows = dm.train_set
    assert isinstance(windows, RandomWindows)
    assert len(windows) == len(ids) - 32
    for i in (0, 12345, len(windows) - 1):
        item = windows[i]
        assert item["input_ids"].shape == item["targets"].shape == (32,)
        np.testing.assert_array_equal(item["input_ids"].numpy(), ids[i : i + 32])
        np.testing.assert_array_equal(item["targets"].numpy(), ids[i + 1 : i + 33])
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == batch["targets"].shape == (4, 32)
    torch.testing.assert_close(batch["targets"][:, :-1], batch["input_ids"][:, 1:])
    # The evaluation loaders pass over whole blocks in order.
    val = next(iter(dm.val_dataloader()))
    np.testing.assert_array_equal(val["targets"][0].numpy(), dm.encoded("val").ids[1:33])


# --- Tiny Shakespeare ----------------------------------------------------------------------
def test_tiny_shakespeare_split_is_first_90_last_10(shakespeare_dir):
    text = (shakespeare_dir / "input.txt").read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    dm = TinyShakespeareDataModule(data_dir=str(shakespeare_dir))
    lines = dm.lines()
    assert "".join(lines["train"]) == text[:cut]
    assert "".join(lines["val"]) == text[cut:]
    assert lines["test"] == lines["val"]
    train, valid, test = dm.encoded("train"), dm.encoded("val"), dm.encoded("test")
    assert len(train) == cut and int(train.chars.sum()) == cut  # one token per character
    assert dm.decode(train.ids.tolist()) == text[:cut]
    assert dm.decode(valid.ids.tolist()) == text[cut:]
    np.testing.assert_array_equal(test.ids, valid.ids)
    assert dm.vocab_size == len(set(text[:cut])) + 1  # the characters of the train split and <unk>
    assert dm.decode(dm.encode("ROMEO: Wherefore?\n")) == "ROMEO: Wherefore?\n"


def test_train_fraction_moves_the_cut(tmp_path):
    text = "".join(f"line {i:02d}\n" for i in range(40))  # 320 characters
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    dm = TinyShakespeareDataModule(data_dir=str(tmp_path), train_fraction=0.75, block_size=8)
    lines = dm.lines()
    assert "".join(lines["train"]) == text[:240]
    assert "".join(lines["val"]) == text[240:]
    with pytest.raises(UserError, match="train_fraction"):
        TinyShakespeareDataModule(data_dir=str(tmp_path), train_fraction=1.0)


def test_second_instantiation_loads_from_cache(shakespeare_dir, monkeypatch):
    first = TinyShakespeareDataModule(data_dir=str(shakespeare_dir), block_size=64)
    first.prepare_data()
    # Derived files go under the XDG cache, keyed by corpus, whatever the data folder allows.
    folder = first.cache.folder
    assert folder.parent == Path(os.environ["XDG_CACHE_HOME"]) / "seqmodels" / "tinyshakespeare"
    assert sorted(p.name for p in folder.iterdir()) == [
        "test-00000.tokens",
        "test.json",
        "tokenizer.json",
        "train-00000.tokens",
        "train.json",
        "val-00000.tokens",
        "val.json",
    ]

    # A second module must not read, tokenize or train anything: it only loads the cache.
    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the cache was there")

    monkeypatch.setattr(TinyShakespeareDataModule, "read_lines", fail)
    monkeypatch.setattr(lm, "encode_lines", fail)
    monkeypatch.setattr(lm, "train_tokenizer", fail)
    second = TinyShakespeareDataModule(data_dir=str(shakespeare_dir), block_size=64)
    second.prepare_data()
    second.setup("fit")
    assert second.vocab_size == first.vocab_size
    for split in SPLITS:
        a, b = first.encoded(split), second.encoded(split)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.words, b.words)
        np.testing.assert_array_equal(a.chars, b.chars)
    # Other settings are other cache entries, not a stale reuse of these.
    with pytest.raises(AssertionError, match="recomputed"):
        TinyShakespeareDataModule(data_dir=str(shakespeare_dir), tokenizer="bpe").prepare_data()


@pytest.mark.parametrize("writable", [True, False])
def test_derived_files_never_go_into_the_data_folder(tmp_path, writable):
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("abcdefghi\n" * 20, encoding="utf-8")
    if not writable:
        data.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        dm = TinyShakespeareDataModule(data_dir=str(data), block_size=8)
        dm.prepare_data()
        assert sorted(p.name for p in data.iterdir()) == ["input.txt"]
        assert dm.cache.folder.is_relative_to(tmp_path / "cache" / "seqmodels" / "tinyshakespeare")
        # cache_dir moves the cache, under the corpus name as well.
        moved = TinyShakespeareDataModule(
            data_dir=str(data), block_size=8, cache_dir=str(tmp_path / "c")
        )
        assert moved.tokenizer_path.parent.parent == tmp_path / "c" / "tinyshakespeare"
    finally:
        data.chmod(stat.S_IRWXU)


def test_cache_key_follows_the_inputs(tmp_path):
    (tmp_path / "input.txt").write_text("abcdefghi\n" * 20, encoding="utf-8")
    dm = TinyShakespeareDataModule(data_dir=str(tmp_path), block_size=8)
    before = dm.cache.folder
    (tmp_path / "input.txt").write_text("abcdefghij\n" * 20, encoding="utf-8")
    assert dm.cache.folder != before  # another file, another key
    assert TinyShakespeareDataModule(data_dir=str(tmp_path), tokenizer="bpe").cache.folder not in (
        before,
        dm.cache.folder,
    )


def test_processes_building_one_cache_at_once_both_get_it_whole(tmp_path):
    """Each writer writes a temporary file and renames it: two building the same cache at
    once (DDP ranks, two runs) leave complete files, and both read the same ids."""
    import subprocess
    import sys

    (tmp_path / "input.txt").write_text(
        "".join(f"line {i}\n" for i in range(500)), encoding="utf-8"
    )
    script = (
        "from datamodules import TinyShakespeareDataModule as T;"
        f"d = T(data_dir={str(tmp_path)!r}, block_size=8, tokenizer='bpe', bpe_vocab_size=300);"
        "d.prepare_data(); print(d.encoded('train').ids.sum())"
    )
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    sums = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(sums) == 1
    dm = TinyShakespeareDataModule(
        data_dir=str(tmp_path), block_size=8, tokenizer="bpe", bpe_vocab_size=300
    )
    assert not list(dm.cache.folder.glob(".*.tmp"))  # no half-written file left behind
    assert str(dm.encoded("train").ids.sum()) in sums


def test_tokenizer_saves_and_loads_with_its_kind(tmp_path):
    lines = TEXT.splitlines(keepends=True)
    for kind in ("word", "bpe", "char"):
        tok = train_tokenizer(kind, lines, bpe_vocab_size=300)
        tok.save(tmp_path / f"{kind}.json")
        again = Tokenizer.load(tmp_path / f"{kind}.json", kind)
        assert again.kind == kind and again.vocab_size == tok.vocab_size
        assert encode_lines(again, lines).ids.tolist() == encode_lines(tok, lines).ids.tolist()
        assert again.unk_id == tok.token_to_id(UNK)
    assert train_tokenizer("word", lines).eos_id == 0  # <eos> first, then <unk>
    assert train_tokenizer("bpe", lines, bpe_vocab_size=300).end_of_text_id == 0


# --- errors --------------------------------------------------------------------------------
def test_corrupt_file_names_file_and_line(tmp_path):
    (tmp_path / "input.txt").write_bytes(
        b"First Citizen:\nBefore we proceed\nany further, \xff\xfehear me\nspeak.\n"
    )
    dm = TinyShakespeareDataModule(data_dir=str(tmp_path), block_size=8)
    with pytest.raises(DataError, match="line 3 ") as err:
        dm.prepare_data()
    assert str(tmp_path / "input.txt") in str(err.value)


def test_corrupt_wikitext_split_names_that_file(tmp_path):
    for split in ("train", "test"):
        (tmp_path / f"{split}.txt").write_text(" a b c \n d e \n", encoding="utf-8")
    (tmp_path / "valid.txt").write_bytes(" a b \n caf\xe9 au lait \n".encode("latin-1"))
    with pytest.raises(DataError, match="line 2 ") as err:
        WikiText2DataModule(data_dir=str(tmp_path), block_size=4).prepare_data()
    assert str(tmp_path / "valid.txt") in str(err.value)


@pytest.mark.parametrize("download", [False, True])  # True: offline (conftest), so no fetch either
def test_missing_corpus_names_folder_and_files(tmp_path, download):
    absent = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        TinyShakespeareDataModule(data_dir=str(absent), download=download).prepare_data()
    assert str(absent) in str(err.value) and "input.txt" in str(err.value)
    with pytest.raises(DataError) as err:
        WikiText2DataModule(data_dir=str(absent), download=download).prepare_data()
    message = str(err.value)
    assert str(absent) in message
    assert all(
        name in message for name in ("train.txt", "valid.txt", "test.txt", "wiki.train.tokens")
    )
    assert not absent.exists()  # nothing was created while failing


def test_block_size_longer_than_train_split(tmp_path):
    (tmp_path / "input.txt").write_text(
        "abcdefghi\n" * 20, encoding="utf-8"
    )  # 200 chars: 180 train
    too_long = TinyShakespeareDataModule(data_dir=str(tmp_path), block_size=180)
    with pytest.raises(UserError, match="block_size=180"):
        too_long.setup("fit")
    fits = TinyShakespeareDataModule(data_dir=str(tmp_path), block_size=179)
    fits.setup("fit")
    assert len(fits.train_set) == 1


# --- WikiText-2, word level ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_token_ids_fill_the_vocabulary_without_holes(kind):
    # "<unk>" and "<eos>" also occur in the text, as in WikiText: every id must still be
    # below the vocabulary size the model's embedding table is built with.
    lines = ["the <unk> sat\n", "the cat <eos> down\n", "a b c\n"]
    tok = train_tokenizer(kind, lines, bpe_vocab_size=300)
    ids = sorted(tok.hf.get_vocab().values())
    assert ids == list(range(tok.vocab_size))
    assert int(encode_lines(tok, lines).ids.max()) < tok.vocab_size


def test_wikitext_word_level(wikitext_dir):
    dm = WikiText2DataModule(data_dir=str(wikitext_dir), block_size=128, eval_batch_size=64)
    tok = dm.tokenizer
    assert tok.token_to_id(EOS) is not None and tok.token_to_id(UNK) is not None
    text = (wikitext_dir / "valid.txt").read_text(encoding="utf-8")
    valid = dm.encoded("val")
    # One token per word, <eos> per line: the word count is the token count.
    assert len(valid) == int(valid.words.sum()) == len(text.split()) + text.count("\n")
    assert int((np.asarray(valid.ids) == tok.token_to_id(EOS)).sum()) == text.count("\n")
    dm.setup("validate")
    metric = LanguageModelMetrics()
    generator = torch.Generator().manual_seed(0)
    for batch in dm.val_dataloader():
        real = batch["targets"] != IGNORE
        assert (batch["target_words"][real] == 1).all()
        assert (batch["target_words"][~real] == 0).all()
        nll = torch.rand(real.shape, generator=generator) * 8
        metric.update(nll, real, batch["target_words"], batch["target_chars"])
    out = metric.compute()
    assert out["word_ppl"].item() == pytest.approx(out["ppl"].item(), rel=1e-6)
    assert metric.tokens.item() == len(valid) - 1


def test_wikitext_vocabulary_from_all_splits_keeps_unseen_words(wikitext_dir):
    # pytorch/examples' dictionary: on wikitext-2-mini about 5% of the test words never occur
    # in train; with vocab_from=all they keep their own ids instead of becoming <unk>.
    text = {s: (wikitext_dir / f"{FILE_SPLITS[s]}.txt").read_text(encoding="utf-8") for s in SPLITS}
    words = set().union(*(t.split() for t in text.values()))
    assert not set(text["test"].split()) <= set(text["train"].split())
    train_only = WikiText2DataModule(data_dir=str(wikitext_dir))
    every = WikiText2DataModule(data_dir=str(wikitext_dir), vocab_from="all")
    assert every.vocab_size == len(words | {EOS, UNK})
    assert train_only.vocab_size == len(set(text["train"].split()) | {EOS, UNK})
    unk = every.tokenizer.token_to_id(UNK)
    test_ids = np.asarray(every.encoded("test").ids)
    assert int((test_ids == unk).sum()) == text["test"].split().count(UNK)


def test_closed_choices_are_checked_by_the_cli_parser(tmp_path):
    """A choice outside a Literal is the parser's error: one line naming the key, exit 2."""
    proc = run_cli(
        "fit",
        "--config",
        config("lstm_wikitext2.yaml"),
        "--data.init_args.vocab_from=dev",
        check=False,
    )
    assert proc.returncode == 2
    assert "vocab_from" in proc.stderr and "Traceback" not in proc.stderr
