"""Testing on any file, from a checkpoint alone: each family trains a few steps, its data and
the data's cache are deleted, and `test --ckpt_path` scores a new file with what the
checkpoint carries (datamodules/fitted_state.py: vocabularies, tokenizer, statistics), never
refitted on the file. Also: unseen categories and words read as unknown and counted in the log,
UCI's adult.test format, and no evaluation text inside training text for the carved splits."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DataError
from datamodules.adult import COLUMNS, AdultDataModule, read_adult
from datamodules.fitted_state import check_plain
from datamodules.names import read_names, split_names
from datamodules.tabular import TabularDataModule
from datamodules.tatoeba import read_tatoeba, split_by_sentence
from tests.conftest import SHARED_DATA, config, need_corpus, run_cli
from tests.test_translation_data import DE, EN, tiny_multi30k
from tests.test_wide_deep import make_row, tiny_adult

QUICK = [
    "--trainer.max_steps=4",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=2",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=logs",
]


def fit_then_forget_the_data(tmp_path: Path, data: Path, *args: str) -> Path:
    """Fit a few steps, then delete the training data and every cache derived from it: the
    checkpoint is all that is left. Returns its path."""
    run_cli("fit", *args, *QUICK)
    (last,) = tmp_path.rglob("checkpoints/last.ckpt")
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    return last


def uci_test_file(path: Path, rows: list[dict[str, str]]) -> Path:
    """UCI's adult.test as published: a first comment line, labels ending in '.'."""
    lines = ["|1x3 Cross validator"]
    lines += [", ".join(r[c] for c in COLUMNS[:-1]) + f", {r['income']}." for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- Wide & Deep ----------------------------------------------------------------------------
def test_adult_checkpoint_alone_tests_uci_adult_test(tmp_path):
    data = tmp_path / "adult"
    tiny_adult(data, n=80)
    last = fit_then_forget_the_data(
        tmp_path,
        data,
        "--config",
        config("wide_deep_adult.yaml"),
        f"--data.init_args.data_dir={data}",
        "--data.init_args.download=false",
    )
    rng = random.Random(1)
    rows = [make_row(rng) for _ in range(30)]
    rows[3]["native_country"] = "Holand-Netherlands"  # in adult.data, not in adult.test
    test_file = uci_test_file(tmp_path / "adult.test", rows)
    proc = run_cli("test", "--ckpt_path", str(last), f"--data.init_args.test_file={test_file}")
    assert "test/acc" in proc.stdout
    assert "native_country unseen in training in 1 of 30 rows" in proc.stderr
    assert "'Holand-Netherlands'" in proc.stderr


def test_adult_state_restores_the_features_not_refitted(tmp_path):
    trained = AdultDataModule(data_dir=str(tiny_adult(tmp_path / "a", n=60).parent))
    state = trained.state_dict()
    check_plain(state, "state")  # what torch.load(weights_only=True) reads back
    rng = random.Random(5)
    other = tmp_path / "b"
    other.mkdir()
    (other / "adult.data").write_text(
        "".join(", ".join(make_row(rng, native_country="Peru")[c] for c in COLUMNS) + "\n" for _ in range(40))
    )  # fmt: skip
    restored = AdultDataModule(data_dir=str(other), test_file=str(other / "adult.data"))
    restored.load_state_dict(state)
    assert restored.categorical_cardinalities == trained.categorical_cardinalities
    assert restored.wide_dim == trained.wide_dim
    test = restored.split_dataset("test").tensors
    country = list(trained.features.vocabularies).index("native_country")
    assert (test["categorical"][:, country] == 0).all()  # Peru: unseen, the OOV id
    expected = trained.features.encode(read_adult(other / "adult.data"))
    torch.testing.assert_close(test["numeric"], expected["numeric"])  # train statistics


def test_adult_reads_uci_test_format_and_unlabelled_rows(tmp_path):
    rng = random.Random(2)
    rows = [make_row(rng, income=label) for label in ("<=50K", ">50K", "<=50K")]
    read = read_adult(uci_test_file(tmp_path / "adult.test", rows))
    assert read.label.tolist() == [0.0, 1.0, 0.0] and read.line.tolist() == [2, 3, 4]
    unlabelled = tmp_path / "predict.csv"
    unlabelled.write_text(", ".join(rows[0][c] for c in COLUMNS[:-1]) + "\n")
    assert np.isnan(read_adult(unlabelled, labelled=False).label).all()
    with pytest.raises(DataError, match="line 1 .* has 14 comma-separated fields, expected 15"):
        read_adult(unlabelled)


def test_a_missing_test_file_is_one_clear_error(tmp_path):
    dm = AdultDataModule(data_dir=str(tiny_adult(tmp_path / "a").parent), test_file="nope.test")
    with pytest.raises(DataError, match=r"data.init_args.test_file: no file nope.test"):
        dm.test_dataloader()


# --- tabular --------------------------------------------------------------------------------
def test_tabular_checkpoint_alone_tests_a_csv_by_column_name(tmp_path):
    data = tmp_path / "table"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b * 10 + 100:.3f},{'big' if a > 0 else 'small'}" for a, b in rng.normal(size=(60, 2))]  # fmt: skip
    (data / "t.csv").write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    last = fit_then_forget_the_data(
        tmp_path,
        data,
        "--config",
        config("mlp_breast_cancer.yaml"),
        "--data.init_args.dataset=csv",
        f"--data.init_args.csv_path={data / 't.csv'}",
        "--data.init_args.target=kind",
    )
    state = torch.load(last, weights_only=True)["TabularDataModule"]
    assert state["feature_names"] == ["a", "b"] and state["classes"] == ["big", "small"]
    test_file = tmp_path / "new.csv"  # other column order, an extra column, one class only
    test_file.write_text("kind,extra,b,a\nbig,7,101.0,1.5\nbig,7,99.0,0.5\n")
    proc = run_cli("test", "--ckpt_path", str(last), f"--data.init_args.test_file={test_file}")
    assert "test/acc" in proc.stdout
    dm = TabularDataModule("csv", csv_path="unused.csv", target="kind", test_file=str(test_file))
    dm.load_state_dict(state)
    features = dm.split_dataset("test").tensors["features"].double().numpy()
    expected = (np.array([[1.5, 101.0], [0.5, 99.0]]) - state["mean"]) / state["std"]
    np.testing.assert_allclose(features, expected, rtol=1e-6)  # train statistics, by name
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,kind\n1,2,huge\n")
    dm = TabularDataModule("csv", csv_path="unused.csv", target="kind", test_file=str(bad))
    dm.load_state_dict(state)
    with pytest.raises(DataError, match="class\\(es\\) the model was not trained on: 'huge'"):
        dm.test_dataloader()


# --- translation ----------------------------------------------------------------------------
def test_translation_checkpoint_alone_tests_a_pair_of_files(tmp_path):
    data = tiny_multi30k(tmp_path / "multi30k")
    last = fit_then_forget_the_data(
        tmp_path,
        data,
        "--config",
        config("transformer_multi30k.yaml"),
        f"--data.init_args.data_dir={data}",
        "--data.init_args.download=false",
        "--data.init_args.tokenizer=word",  # whole words: an unseen one is counted
        "--data.init_args.batch_size=8",
        "--model.init_args.n_layer=1",
        "--model.init_args.n_head=2",
        "--model.init_args.n_embd=16",
        "--model.init_args.n_ff=32",
        "--model.init_args.max_new_tokens=6",
        "--model.init_args.test_num_beams=1",
    )
    source, target = tmp_path / "new.de", tmp_path / "new.en"
    source.write_text(f"{DE[0]}\nein zebrafisch schwimmt .\n")  # 'zebrafisch': never seen
    target.write_text(f"{EN[0]}\na zebrafish swims .\n")
    proc = run_cli(
        "test",
        "--ckpt_path",
        str(last),
        f"--data.init_args.test_files.source={source}",
        f"--data.init_args.test_files.target={target}",
    )
    assert "test/bleu" in proc.stdout
    assert f"{source}: words unseen in training in" in proc.stderr
    assert "'zebrafisch'" in proc.stderr
    uneven = tmp_path / "short.en"
    uneven.write_text("a dog .\n")
    proc = run_cli(
        "test",
        "--ckpt_path",
        str(last),
        f"--data.init_args.test_files={{source: {source}, target: {uneven}}}",
        check=False,
    )
    assert proc.returncode == 2 and "has 2 lines but" in proc.stderr


# --- names ----------------------------------------------------------------------------------
def test_names_checkpoint_alone_tests_a_names_file(tmp_path):
    data = tmp_path / "names"
    data.mkdir()
    rng = random.Random(0)
    names = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 7))) for _ in range(60)]
    (data / "names.txt").write_text("\n".join(names) + "\n")
    last = fit_then_forget_the_data(
        tmp_path,
        data,
        "--config",
        config("mlp_names.yaml"),
        f"--data.init_args.data_dir={data}",
        "--data.init_args.download=false",
        "--data.init_args.batch_size=16",
        "--model.init_args.n_hidden=16",
        "--trainer.val_check_interval=4",
    )
    test_file = tmp_path / "new.txt"
    test_file.write_text("zoe\nxavier\n")
    proc = run_cli("test", "--ckpt_path", str(last), f"--data.init_args.test_file={test_file}")
    assert "test/loss" in proc.stdout


# --- no evaluation text inside training text, for the corpora with a carved split ------------
def test_names_carved_split_has_no_evaluation_name_in_train():
    need_corpus("names.txt")
    splits = split_names(read_names(SHARED_DATA / "names.txt"), 42)
    train = set(splits["train"])
    assert not train & (set(splits["val"]) | set(splits["test"]))


def test_tatoeba_carved_split_has_no_evaluation_sentence_in_train():
    need_corpus("tatoeba-cmn-eng")
    splits = split_by_sentence(read_tatoeba(SHARED_DATA / "tatoeba-cmn-eng" / "cmn.txt"), 42)
    for lang in ("en", "zh"):
        train = set(splits["train"][lang])
        held_out = Counter(s for split in ("val", "test") for s in splits[split][lang])
        leaked = [s for s in held_out if s in train]
        assert not leaked, f"{lang}: {len(leaked)} evaluation sentences in train: {leaked[:3]}"
