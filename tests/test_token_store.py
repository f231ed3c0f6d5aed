"""Token ids as memory-mapped shards (datamodules/token_store.py): the ids, word and character
counts of the offline corpora are those of the in-memory encoding that came before, whatever
the shard size or the number of encoding processes, and every reader (random windows, the
ordered pass, contiguous streams) sees the same batches from the shards as from memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules import TinyShakespeareDataModule, WikiText2DataModule, token_store
from datamodules.language_modeling import ContiguousColumns, OrderedBlocks, RandomWindows
from datamodules.token_store import ShardedArray, StoredSplit, concatenate, encode_batches
from datamodules.tokenizers import EncodedSplit, train_tokenizer
from tests.conftest import need_corpus


def reference_encode_lines(tok, lines: list[str]) -> EncodedSplit:
    """The encoding as it was before the shards (one line at a time, in memory): the figures
    every earlier result was computed with."""
    eos_id = tok.eos_id if tok.kind == "word" else None
    ids, words, chars = [], [], []
    encodings = tok.hf.encode_batch(list(lines), add_special_tokens=False)
    for line, enc in zip(lines, encodings, strict=True):
        line_ids, ends = enc.ids, [end for _, end in enc.offsets]
        if eos_id is not None:
            line_ids, ends = [*line_ids, eos_id], [*ends, len(line)]
        ids.extend(line_ids)
        ends_arr = np.asarray(ends, dtype=np.int64)
        is_space = np.fromiter((c.isspace() for c in line), dtype=bool, count=len(line))
        starts = ~is_space
        starts[1:] &= is_space[:-1]
        if line.endswith("\n"):
            starts[-1] = True
        cum = np.concatenate([[0], np.cumsum(starts.astype(np.int64))])
        prev = np.concatenate([[0], ends_arr[:-1]])
        words.append(cum[ends_arr] - cum[prev])
        chars.append(ends_arr - prev)
    return EncodedSplit(
        np.asarray(ids, dtype=np.int64),
        np.concatenate(words).astype(np.uint8),
        np.concatenate(chars).astype(np.uint16),
    )


def assert_same(stored, reference: EncodedSplit) -> None:
    for field in ("ids", "words", "chars"):
        np.testing.assert_array_equal(np.asarray(getattr(stored, field)), getattr(reference, field))


@pytest.mark.parametrize(
    ("corpus", "kwargs"),
    [
        ("tinyshakespeare", {"tokenizer": "char"}),
        ("wikitext-2-mini", {"tokenizer": "word"}),
        ("wikitext-2-mini", {"tokenizer": "bpe", "bpe_vocab_size": 500}),
    ],
)
def test_stored_ids_equal_the_in_memory_encoding(tmp_path, monkeypatch, corpus, kwargs):
    monkeypatch.setattr(token_store, "TOKENS_PER_SHARD", 100_000)  # several shards a split
    kind = TinyShakespeareDataModule if corpus == "tinyshakespeare" else WikiText2DataModule
    dm = kind(data_dir=str(need_corpus(corpus)), cache_dir=str(tmp_path), block_size=16)
    dm.prepare_data()
    # Shakespeare's train split is 1M characters read one by one by the reference: its val
    # and test (the same text) go through the same code.
    for split in ("val", "test") if corpus == "tinyshakespeare" else ("train", "val", "test"):
        stored = dm.encoded(split)
        assert isinstance(stored, StoredSplit) and stored.ids.dtype == np.uint16
        assert_same(stored, reference_encode_lines(dm.tokenizer, dm.lines()[split]))
    assert len(dm.encoded("train").ids.shards) > 1
    assert sorted(p.name for p in dm.cache.folder.glob("train*"))[:2] == [
        "train-00000.tokens",
        "train-00001.tokens",
    ]


def test_line_batches_and_processes_change_nothing(tmp_path, monkeypatch):
    dm = WikiText2DataModule(
        data_dir=str(need_corpus("wikitext-2-mini")), cache_dir=str(tmp_path / "a")
    )
    lines = dm.lines()["val"]
    batches = [lines[i : i + 997] for i in range(0, len(lines), 997)]
    one = concatenate(list(encode_batches(dm._encode, batches, 1)))
    two = concatenate(list(encode_batches(dm._encode, iter(batches), 2)))
    assert_same(one, reference_encode_lines(dm.tokenizer, lines))
    assert_same(two, one)


def test_readers_see_the_same_batches_from_shards_as_from_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(token_store, "TOKENS_PER_SHARD", 5000)
    monkeypatch.setattr(token_store, "REMAP_BYTES", 1 << 17)  # maps dropped and made again
    dm = WikiText2DataModule(data_dir=str(need_corpus("wikitext-2-mini")), cache_dir=str(tmp_path))
    stored = dm.encoded("val")
    memory = EncodedSplit(*(np.asarray(getattr(stored, f)) for f in ("ids", "words", "chars")))
    assert len(stored.ids.shards) > 10

    def same(a, b):
        assert len(a) == len(b)
        for i in [*range(0, len(a), max(1, len(a) // 50)), len(a) - 1]:
            x, y = a[i], b[i]
            assert all(torch.equal(x[k], y[k]) for k in x)

    same(RandomWindows(stored.ids, 64), RandomWindows(memory.ids.astype(np.int64), 64))
    same(OrderedBlocks(stored, 64, 2), OrderedBlocks(memory, 64, 2))
    for rank in (0, 1):
        same(ContiguousColumns(stored, 4, 35, rank, 2), ContiguousColumns(memory, 4, 35, rank, 2))


def test_a_sharded_array_reads_across_shards_and_pickles_without_its_maps(tmp_path):
    values = np.arange(1000, dtype=np.uint32)
    shards, at = [], 0
    for k, n in enumerate([300, 1, 499, 200]):
        path = tmp_path / f"s{k}"
        path.write_bytes(b"head" + values[at : at + n].tobytes())
        shards.append((str(path), 4, n))
        at += n
    array = ShardedArray(shards, np.uint32)
    assert len(array) == 1000 and array[-1] == 999 and array.sum() == values.sum()
    np.testing.assert_array_equal(array[295:805], values[295:805])
    np.testing.assert_array_equal(array[:], values)
    import pickle

    again = pickle.loads(pickle.dumps(array))
    assert len(pickle.dumps(array)) < 2000 and again[299:302].tolist() == [299, 300, 301]


def test_tokenizers_train_from_a_stream_as_from_a_list():
    lines = (need_corpus("wikitext-2-mini") / "valid.txt").read_text().splitlines(keepends=True)
    for kind in ("char", "word", "bpe"):
        listed = train_tokenizer(kind, lines, 400)
        streamed = train_tokenizer(kind, (line for line in lines), 400)
        assert listed.hf.to_str() == streamed.hf.to_str()
