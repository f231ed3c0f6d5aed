"""Sentiment evaluation you can trust: a checkpoint alone tests and predicts any file with the
vocabulary it was trained with (unseen words counted as <unk>), and held-out sentences share
no text with training."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from core.errors import DataError, UserError
from datamodules.held_out import carve_by_sentence, leaks, whole_sentences
from datamodules.sentiment import (
    UNK_ID,
    RTPolarityDataModule,
    SST2DataModule,
    comparable,
    read_labelled_tsv,
)
from tests.conftest import config, need_corpus, run_cli
from tests.test_sentiment import TINY, write_sst2

GOOD = ["a good film", "a fine and good story", "good acting", "a warm good film"]
BAD = ["a bad film", "a dull and bad story", "bad acting", "a cold bad film"]


def tiny_sst2(folder: Path) -> Path:
    train = [f"{t}\t1" for t in GOOD * 8] + [f"{t}\t0" for t in BAD * 8]
    return write_sst2(folder, train, ["a good story\t1", "a bad story\t0"])


def tiny_rt_polarity(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, texts in (("rt-polarity.pos", GOOD), ("rt-polarity.neg", BAD)):
        lines = [f"{t} number {i} ." for i in range(10) for t in texts]
        (folder / name).write_text("".join(f"{line}\n" for line in lines))
    return folder


# --- a checkpoint alone evaluates ---------------------------------------------------------
@pytest.mark.parametrize(
    ("config_name", "make_corpus", "state_key"),
    [
        ("sentiment_lstm_sst2.yaml", tiny_sst2, "SST2DataModule"),
        ("sentiment_gru_rt_polarity.yaml", tiny_rt_polarity, "RTPolarityDataModule"),
    ],
)
def test_checkpoint_alone_tests_and_predicts_a_new_file(
    tmp_path, config_name, make_corpus, state_key
):
    corpus = make_corpus(tmp_path / "corpus")
    run_cli("fit", "--config", config(config_name), f"--data.init_args.data_dir={corpus}", *TINY)
    (best,) = tmp_path.rglob("checkpoints/best-*.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)[state_key]
    assert state["words"][:2] == ["<pad>", "<unk>"] and "good" in state["words"]
    # Nothing of the training data is left: no corpus, no cache.
    shutil.rmtree(corpus)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    new = tmp_path / "new.tsv"
    new.write_text("sentence\tlabel\na good film\t1\nan utterly dreadful film\t0\n")
    proc = run_cli("test", f"--ckpt_path={best}", f"--data.init_args.test_file={new}")
    assert "test/acc" in proc.stdout
    # "an", "utterly", "dreadful" were never seen in training: <unk>, counted, no crash.
    assert f"test ({new}): 2 sentences; 3 of 7 words (42.86%)" in proc.stderr + proc.stdout
    if state_key == "SST2DataModule":
        lines = tmp_path / "new.txt"
        lines.write_text("a good film\nsomething unheard of\n")
        proc = run_cli("predict", f"--ckpt_path={best}", f"--data.init_args.predict_file={lines}")
        assert f"predict ({lines}): 2 sentences; 3 of 6 words" in proc.stderr + proc.stdout


def test_restored_vocabulary_wins_over_another_train_file(tmp_path):
    trained = SST2DataModule(data_dir=str(tiny_sst2(tmp_path / "a")))
    state = trained.state_dict()
    other = write_sst2(tmp_path / "b", ["an entirely other corpus\t1"], ["different\t0"])
    data = SST2DataModule(data_dir=str(other), lowercase=False)
    data.load_state_dict(state)
    assert data.vocab == trained.vocab and data.lowercase is True  # as trained
    data.setup("fit")
    assert data.datasets["train"].ids == [[UNK_ID, UNK_ID, UNK_ID, UNK_ID]]
    # Lightning restores the state again after setup: data encoded with another vocabulary
    # is encoded again.
    fresh = SST2DataModule(data_dir=str(other))
    fresh.setup("fit")
    fresh.load_state_dict(state)
    assert fresh.datasets["train"].ids == [[UNK_ID] * 4]
    with pytest.raises(DataError, match="not one this version reads"):
        fresh.load_state_dict({**state, "format": 99})


def test_unseen_words_are_counted_as_unk(tmp_path, caplog):
    data = SST2DataModule(data_dir=str(tiny_sst2(tmp_path / "a")))
    new = tmp_path / "new.tsv"
    new.write_text("sentence\tlabel\nA GOOD zzz film\t1\n")
    evaluating = SST2DataModule(data_dir=str(tmp_path / "gone"), test_file=str(new))
    evaluating.load_state_dict(data.state_dict())
    with caplog.at_level(logging.INFO):
        evaluating.prepare_data()  # the corpus is not needed, and not looked for
        evaluating.setup("test")
    vocab = data.vocab
    assert evaluating.datasets["test"].ids == [[vocab["a"], vocab["good"], UNK_ID, vocab["film"]]]
    assert "1 of 4 words (25.00%) not in the training vocabulary" in caplog.text


def test_bad_evaluation_files_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"data.init_args.test_file: .*missing.tsv is not a file"):
        SST2DataModule(test_file=str(tmp_path / "missing.tsv"))
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nfine\t1\nodd\t2\n")
    data = SST2DataModule(data_dir=str(tiny_sst2(tmp_path / "a")), test_file=str(bad))
    with pytest.raises(DataError, match=r"bad.tsv: line 3 has label '2'"):
        data.setup("test")


# --- held-out sentences leak nothing into training ------------------------------------------
def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def test_carving_keeps_every_piece_of_a_held_out_sentence_out_of_training():
    sentences = [f"s{i} is a fine film number {i} ." for i in range(20)]
    pieces = [f"s{i} is a fine film" for i in range(20)] + ["a fine film", "film"]
    texts = [words(t) for t in sentences + pieces]
    assert whole_sentences(texts) == [words(s) for s in sentences]
    cut = carve_by_sentence(texts, seed=3, fractions=(0.8, 0.1, 0.1))
    assert [len(cut["val"]), len(cut["test"])] == [2, 2]
    held = [texts[i] for i in cut["val"] + cut["test"]]
    training = [texts[i] for i in cut["train"]]
    assert leaks(held, training) == []
    # "a fine film" and "film" lie inside every sentence: they left training with the
    # held-out ones, as did each held-out sentence's own "sN is a fine film".
    assert len(training) == 16 + 16
    assert leaks(held, training + [words("a fine film")])  # the check sees a leak


@pytest.mark.parametrize("corpus", [SST2DataModule, RTPolarityDataModule])
def test_offline_corpora_hold_out_whole_sentences_that_leak_nothing(corpus):
    need_corpus(corpus.corpus)
    splits = corpus().splits
    training = [comparable(ex.text) for ex in splits["train"]]
    for split in ("val", "test"):
        held = [comparable(ex.text) for ex in splits[split]]
        assert len(held) > 600
        assert leaks(held, training) == [], f"{split} shares text with training"
    assert {ex.text for ex in splits["val"]}.isdisjoint(ex.text for ex in splits["test"])


def test_offline_sst2_dev_file_leaks_so_it_is_carved():
    folder = need_corpus("sst2")
    train, dev = (read_labelled_tsv(folder / f) for f in ("train.tsv", "dev.tsv"))
    dev_texts = [comparable(ex.text) for ex in dev[:300]]
    assert len(leaks(dev_texts, [comparable(ex.text) for ex in train], limit=200)) == 200


def test_a_dev_file_of_other_sentences_is_the_held_out_set(tmp_path):
    folder = write_sst2(
        tmp_path / "sst2",
        ["a good film\t1", "a bad film\t0"],
        ["the acting is superb\t1", "an awful mess\t0"],
    )
    splits = SST2DataModule(data_dir=str(folder)).splits
    assert [ex.text for ex in splits["val"]] == ["the acting is superb", "an awful mess"]
    assert splits["test"] == splits["val"]  # GLUE's test labels are hidden
    carved = SST2DataModule(data_dir=str(folder), held_out="carve").splits
    assert [len(carved[split]) for split in ("train", "val", "test")] == [2, 1, 1]
