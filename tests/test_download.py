"""With a network, a missing corpus is fetched into the data folder; offline it fails at once.
The network is replaced by fakes here: these machines reach no dataset hub."""

from __future__ import annotations

import io

import datasets
import pytest

from core.errors import DataError
from datamodules import TinyShakespeareDataModule, WikiText2DataModule, corpus

WIKI_ROWS = {
    "train": ["", " = Title = \n", "", " the cat sat on the mat . \n", " a dog ran . \n"],
    "validation": ["", " the dog sat . \n"],
    "test": ["", " a cat ran on the mat . \n"],
}


def test_wikitext2_is_fetched_from_the_hub_into_the_data_folder(tmp_path, online, monkeypatch):
    calls = []

    def fake_load_dataset(path, name):
        calls.append((path, name))
        return datasets.DatasetDict(
            {k: datasets.Dataset.from_dict({"text": v}) for k, v in WIKI_ROWS.items()}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dm = WikiText2DataModule(data_dir=str(tmp_path / "wt2"), block_size=4, batch_size=2)

    assert dm.vocab_size > 0
    assert calls == [("Salesforce/wikitext", "wikitext-2-v1")]
    assert (tmp_path / "wt2" / "wiki.train.tokens").read_text() == "".join(WIKI_ROWS["train"])
    assert (tmp_path / "wt2" / "wiki.valid.tokens").read_text() == "".join(WIKI_ROWS["validation"])
    # the tokenizer and token ids go to the cache, never beside the data (even when writable)
    assert sorted(p.name for p in (tmp_path / "wt2").iterdir()) == [
        "wiki.test.tokens",
        "wiki.train.tokens",
        "wiki.valid.tokens",
    ]
    assert dm.tokenizer_path.is_relative_to(tmp_path / "cache" / "seqmodels" / "wikitext-2")


def test_wikitext2_raw_variant_uses_the_raw_config(tmp_path, online, monkeypatch):
    calls = []

    def fake_load_dataset(path, name):
        calls.append(name)
        return datasets.DatasetDict(
            {k: datasets.Dataset.from_dict({"text": v}) for k, v in WIKI_ROWS.items()}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dm = WikiText2DataModule(data_dir=str(tmp_path / "wt2"), raw=True, tokenizer="char")
    dm.prepare_data()
    assert calls == ["wikitext-2-raw-v1"]
    assert (tmp_path / "wt2" / "wiki.test.raw").exists()


def test_tiny_shakespeare_is_fetched_from_char_rnn(tmp_path, online, monkeypatch):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO(text.encode())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    dm = TinyShakespeareDataModule(data_dir=str(tmp_path / "ts"), block_size=8)
    assert dm.vocab_size == len(set(text)) + 1  # + <unk>
    assert urls and urls[0].endswith("tinyshakespeare/input.txt")
    assert (tmp_path / "ts" / "input.txt").read_text() == text


def test_offline_and_missing_fails_at_once_naming_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(corpus, "reachable", lambda url, timeout=5.0: False)
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try to download")
    )

    dm = WikiText2DataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        dm.vocab_size  # noqa: B018
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert "train.txt" in message and "wiki.train.tokens" in message
    assert "cannot be reached" in message


def test_failed_download_becomes_a_clear_error(tmp_path, online, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("hub said no")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(DataError, match="downloading failed.*hub said no"):
        WikiText2DataModule(data_dir=str(tmp_path / "wt2")).vocab_size  # noqa: B018
