"""The movie-review language-modelling corpus: held-out review sentences never reach the
training text, a missing file is one clear error, and the review GPT's config trains."""

from __future__ import annotations

from pathlib import Path

from datamodules.reviews import ReviewsDataModule, comparable_words, word_runs
from tests.conftest import TINY_GPT, assert_one_clear_error, config, need_corpus, run_cli


def write_corpora(root: Path, sst2: list[str], pos: list[str], neg: list[str]) -> Path:
    (root / "sst2").mkdir(parents=True)
    (root / "rt-polarity").mkdir()
    rows = "".join(f"{p}\t1\n" for p in sst2)
    (root / "sst2" / "train.tsv").write_text(f"sentence\tlabel\n{rows}")
    (root / "rt-polarity" / "rt-polarity.pos").write_text("".join(f"{s}\n" for s in pos))
    (root / "rt-polarity" / "rt-polarity.neg").write_text("".join(f"{s}\n" for s in neg))
    return root


def test_held_out_sentences_and_their_pieces_never_train(tmp_path):
    pos = [f"review number {i} is a warm and funny film ." for i in range(10)]
    neg = [f"review number {i} is a dull , tired mess ." for i in range(10, 20)]
    data = ReviewsDataModule(
        data_dir=str(write_corpora(tmp_path / "data", ["a placeholder phrase"], pos, neg)),
        val_fraction=0.2,
        test_fraction=0.2,
        sst2_min_words=2,
    )
    held_out = data.held_out_sentences("val") + data.held_out_sentences("test")
    # SST-2 tokenizes its copies of the same snippets differently ("film's" / "film 's").
    sst2 = [
        held_out[0].replace(" is ", " is  "),  # a held-out sentence, spaced otherwise
        " ".join(held_out[1].split()[2:6]),  # a run of words of one
        "a film 's quiet charm wins",  # training text of its own
        "too short",  # kept: 2 words
        "one",  # dropped: below sst2_min_words
    ]
    data = ReviewsDataModule(
        data_dir=str(write_corpora(tmp_path / "data2", sst2, pos, neg)),
        val_fraction=0.2,
        test_fraction=0.2,
        sst2_min_words=2,
    )
    lines = {split: [line.rstrip("\n") for line in data.lines()[split]] for split in data.lines()}
    assert len(lines["val"]) == len(lines["test"]) == 4 and len(lines["train"]) == 12 + 2
    assert set(lines["val"] + lines["test"]) == set(held_out)  # the same seeded split
    assert "a film 's quiet charm wins" in lines["train"] and "too short" in lines["train"]
    runs = word_runs(lines["val"] + lines["test"])
    assert not any(comparable_words(line) in runs for line in lines["train"])
    assert comparable_words("the film's end") == comparable_words("The film 's end")


def test_a_missing_file_is_one_clear_error(tmp_path):
    root = write_corpora(tmp_path / "data", ["a fine film"], ["good ."], ["bad ."])
    (root / "rt-polarity" / "rt-polarity.neg").unlink()
    proc = run_cli(
        "fit",
        "--config",
        config("gpt_reviews.yaml"),
        f"--data.init_args.data_dir={root}",
        "--data.init_args.download=false",
        *TINY_GPT,
        check=False,
    )
    assert proc.returncode == 2
    assert_one_clear_error(proc, "rt-polarity/rt-polarity.neg", str(root))


def test_review_gpt_config_trains_on_the_shared_corpora(tmp_path):
    need_corpus("sst2")
    need_corpus("rt-polarity")
    run_cli(
        "fit",
        "--config",
        config("gpt_reviews.yaml"),
        "--data.init_args.bpe_vocab_size=300",
        *TINY_GPT,
    )
    assert next(tmp_path.rglob("checkpoints/last.ckpt")).is_file()
