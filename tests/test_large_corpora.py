"""Corpora read in chunks: a folder of text files and a Hugging Face dataset (saved locally:
nothing is downloaded), their seeded splits without leakage, the chunked reader, and the
clear refusals (dedup, a dataset that cannot be had offline)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from core.errors import DataError, UserError
from datamodules import HFTextDataModule, TextFolderDataModule
from datamodules.text_files import read_line_batches, read_text
from datamodules.token_store import StoredSplit


def write_folder(folder, n_files: int = 12, lines: int = 60) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    texts = {}
    for f in range(n_files):
        name = f"part{f:02d}.txt" if f % 4 else f"sub/part{f:02d}.txt"
        text = "".join(f"file {f} line {i}: the quick brown fox {i * f}\n" for i in range(lines))
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        texts[name] = text
    return texts


def split_text(dm, split: str) -> str:
    return "".join(line for batch in dm.line_batches(split) for line in batch)


def test_the_chunked_reader_cuts_lines_as_the_whole_text_does(tmp_path):
    text = "é" * 5 + "\r\n" + "a\u2028b\r" + "\n" * 3 + "ü€x\r\n" * 40 + "last"
    path = tmp_path / "f.txt"
    path.write_bytes(text.encode())
    (tmp_path / "f.txt.gz").write_bytes(gzip.compress(text.encode()))
    whole = read_text(path).splitlines(keepends=True)
    for size in (1, 2, 3, 7, 64, 1 << 20):
        assert [line for b in read_line_batches(path, size) for line in b] == whole
    assert [line for b in read_line_batches(tmp_path / "f.txt.gz", 5) for line in b] == whole
    path.write_bytes(b"good\n" * 3 + b"bad \xff\n")
    with pytest.raises(DataError, match=r"f\.txt: line 4 is not valid UTF-8"):
        list(read_line_batches(path, 4))


def test_a_text_folder_splits_by_file_without_leakage(tmp_path):
    texts = write_folder(tmp_path / "corpus")
    dm = TextFolderDataModule(
        data_dir=str(tmp_path / "corpus"), tokenizer="char", block_size=8, val_fraction=0.2
    )
    splits = dm.file_splits()
    assert sorted(splits.values()).count("val") == 2 and list(splits.values()).count("test") == 1
    for split in ("train", "val", "test"):
        expected = "".join(texts[name] for name in sorted(texts) if splits[name] == split)
        assert split_text(dm, split) == expected
    dm.prepare_data()
    assert isinstance(dm.encoded("train"), StoredSplit)
    assert dm.decode(dm.encoded("val").ids.tolist()) == split_text(dm, "val")
    # Another seed, another split; the same seed, the same one.
    assert (
        TextFolderDataModule(data_dir=str(tmp_path / "corpus"), split_seed=1).file_splits()
        != splits
    )
    assert (
        TextFolderDataModule(data_dir=str(tmp_path / "corpus"), val_fraction=0.2).file_splits()
        == splits
    )


def test_a_text_folder_splits_by_chunk_and_tokenizes_alike_in_two_processes(tmp_path):
    write_folder(tmp_path / "corpus", n_files=2, lines=3000)
    kwargs = {"data_dir": str(tmp_path / "corpus"), "split_by": "chunk", "chunk_lines": 100}
    dm = TextFolderDataModule(
        **kwargs, tokenizer="bpe", bpe_vocab_size=300, cache_dir=str(tmp_path / "a")
    )
    pieces = {s: split_text(dm, s) for s in ("train", "val", "test")}
    lines = {s: set(t.splitlines()) for s, t in pieces.items()}
    assert (
        all(pieces.values())
        and not (lines["train"] & lines["val"])
        and not (lines["val"] & lines["test"])
    )
    assert sum(map(len, pieces.values())) == sum(len(read_text(p)) for p in dm.files.values())
    two = TextFolderDataModule(
        **kwargs, tokenizer="bpe", bpe_vocab_size=300, num_proc=2, cache_dir=str(tmp_path / "b")
    )
    for split in ("train", "val"):
        np.testing.assert_array_equal(
            np.asarray(two.encoded(split).ids), np.asarray(dm.encoded(split).ids)
        )


def test_a_text_folder_refuses_what_it_cannot_do(tmp_path):
    write_folder(tmp_path / "two", n_files=2)
    with pytest.raises(UserError, match="dedup: TextFolderDataModule reads its text in chunks"):
        TextFolderDataModule(data_dir=str(tmp_path / "two"), dedup=True)
    with pytest.raises(DataError, match="split_by: file needs at least 3 files .*split_by: chunk"):
        TextFolderDataModule(data_dir=str(tmp_path / "two")).file_splits()
    with pytest.raises(DataError, match=r"corpus not found in .*empty \(looked for \*\*/\*\.txt\)"):
        TextFolderDataModule(data_dir=str(tmp_path / "empty")).prepare_data()


def saved_dataset(folder, with_validation: bool):
    import datasets

    rows = {
        "text": [f"row {i}: a sentence about {i % 7} things" for i in range(3000)],
        "n": list(range(3000)),
    }
    splits = {"train": datasets.Dataset.from_dict(rows)}
    if with_validation:
        splits["validation"] = datasets.Dataset.from_dict(
            {"text": ["held out\nrow"] * 50, "n": [0] * 50}
        )
    datasets.DatasetDict(splits).save_to_disk(str(folder))


@pytest.mark.parametrize("streaming", [False, True])
def test_a_saved_hf_dataset_is_read_with_its_splits_and_held_out_rows(tmp_path, streaming):
    saved_dataset(tmp_path / "ds", with_validation=True)
    dm = HFTextDataModule(
        dataset=str(tmp_path / "ds"),
        tokenizer="char",
        block_size=8,
        streaming=streaming,
        chunk_rows=100,
    )
    assert split_text(dm, "val") == "held out\nrow\n" * 50  # each row ends with a newline
    train, test = split_text(dm, "train"), split_text(dm, "test")  # test: held out of train
    assert test and not set(train.splitlines()) & set(test.splitlines())
    assert len(train.splitlines()) + len(test.splitlines()) == 3000
    dm.prepare_data()
    assert dm.decode(dm.encoded("test").ids.tolist()) == test


def test_a_hf_dataset_that_cannot_be_had_offline_says_how_to_provide_it(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The libraries read the variables once, at import (which another test may have done
    # first): set what they read, so that nothing tries the network and waits for retries.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dm = HFTextDataModule(dataset="someone/no-such-dataset-here", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"(?s)not a local folder and .*save_to_disk\(DIR\)"):
        dm.prepare_data()
    saved_dataset(tmp_path / "ds", with_validation=False)
    with pytest.raises(DataError, match="no column 'body'.*text_column"):
        HFTextDataModule(dataset=str(tmp_path / "ds"), text_column="body").prepare_data()
    with pytest.raises(UserError, match="dedup: HFTextDataModule"):
        HFTextDataModule(dataset=str(tmp_path / "ds"), dedup=True)


def test_each_ddp_rank_reads_its_own_windows_when_the_datamodule_shards(tmp_path):
    """With `use_distributed_sampler: false` (what a corpus of gigabytes wants: Lightning's
    sampler holds a list of every window) the datamodule gives each rank its share: training
    windows disjoint but for the padding, evaluation blocks disjoint and complete."""
    from types import SimpleNamespace

    write_folder(tmp_path / "corpus", n_files=6, lines=20)
    shares = {"train": [], "val": []}
    for rank in (0, 1):
        dm = TextFolderDataModule(data_dir=str(tmp_path / "corpus"), tokenizer="char", block_size=8)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        dm.prepare_data()
        dm.setup("fit")
        shares["train"].append(list(dm.train_dataloader().sampler))
        shares["val"].append(list(dm.val_dataloader().sampler))
    windows, blocks = len(dm.train_set), len(dm.val_set)
    assert len(shares["train"][0]) == len(shares["train"][1]) == -(-windows // 2)
    assert set(shares["train"][0]) | set(shares["train"][1]) == set(range(windows))
    assert sorted(shares["val"][0] + shares["val"][1]) == list(range(blocks))  # padded blocks
