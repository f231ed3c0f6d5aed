"""Wide & Deep on UCI Adult: the data (train-only vocabularies and statistics, a seeded split,
malformed rows), the model (parts, optimizers, overfitting) and each config through the CLI."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core.errors import DataError
from datamodules.adult import (
    CATEGORICAL,
    COLUMNS,
    NUMERIC,
    OOV_ID,
    AdultDataModule,
    TensorRows,
    read_adult,
    split_rows,
)
from lit_models.wide_deep import FTRLProximal, WideDeep
from tests.conftest import config, need_corpus, quiet_trainer, run_cli

VALUES = {
    "workclass": ["Private", "State-gov", "Self-emp-inc", "?"],
    "education": ["Bachelors", "HS-grad", "Masters", "Doctorate"],
    "marital_status": ["Never-married", "Divorced", "Married-civ-spouse"],
    "occupation": ["Sales", "Tech-support", "Exec-managerial", "?"],
    "relationship": ["Husband", "Wife", "Own-child"],
    "race": ["White", "Black", "Other"],
    "sex": ["Male", "Female"],
    "native_country": ["United-States", "Mexico", "India", "?"],
}


def make_row(rng: random.Random, **fixed) -> dict[str, str]:
    row = {c: rng.choice(v) for c, v in VALUES.items()}
    row.update(
        age=str(rng.randint(17, 90)),
        fnlwgt=str(rng.randint(20000, 900000)),
        education_num=str(rng.randint(1, 16)),
        capital_gain=str(rng.choice([0, 0, 0, 5000, 15024])),
        capital_loss=str(rng.choice([0, 0, 1902])),
        hours_per_week=str(rng.randint(10, 80)),
        income=rng.choice(["<=50K", ">50K"]),
    )
    row.update(fixed)
    return row


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(", ".join(r[c] for c in COLUMNS) + "\n" for r in rows))
    return path


def tiny_adult(folder: Path, n: int = 60, seed: int = 0, **per_split) -> Path:
    """A CSV of `n` random rows; `per_split={'test': {...}}` fixes columns of the rows that the
    seed-42 split puts in that split."""
    rng = random.Random(seed)
    where = {i: s for s, rows in split_rows(n, 42).items() for i in rows}
    rows = [make_row(rng, **per_split.get(where[i], {})) for i in range(n)]
    return write_csv(folder / "adult.data", rows)


# --- data -----------------------------------------------------------------------------------
def test_split_is_seeded_disjoint_and_complete():
    a, b, other = split_rows(1000, 7), split_rows(1000, 7), split_rows(1000, 8)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert not np.array_equal(a["test"], other["test"])
    assert [len(a[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    together = np.concatenate(list(a.values()))
    assert sorted(together.tolist()) == list(range(1000))  # disjoint and complete


def test_datamodule_splits_the_file_rows(tmp_path):
    tiny_adult(tmp_path, n=50)
    splits = AdultDataModule(data_dir=str(tmp_path)).splits
    lines = [set(splits[s].line.tolist()) for s in ("train", "val", "test")]
    assert [len(x) for x in lines] == [40, 5, 5]
    assert set().union(*lines) == set(range(1, 51)) and sum(map(len, lines)) == 50


def test_vocabularies_never_see_a_test_category(tmp_path):
    # A workclass and a country that occur only in test rows must read as OOV there, in the
    # deep part's ids and in the wide part's one-hot and crosses alike.
    tiny_adult(tmp_path, test={"workclass": "Planted-Test-Only", "native_country": "Atlantis"})
    dm = AdultDataModule(data_dir=str(tmp_path))
    vocab = dm.features.vocabularies
    assert (
        "Planted-Test-Only" not in vocab["workclass"] and "Atlantis" not in vocab["native_country"]
    )
    assert "?" in vocab["workclass"]  # missing is a category of its own, not OOV
    dm.setup()
    test = dm.split_dataset("test").tensors
    for column in ("workclass", "native_country"):
        assert (test["categorical"][:, CATEGORICAL.index(column)] == OOV_ID).all()
    assert (dm.split_dataset("train").tensors["categorical"] != OOV_ID).all()
    # The wide ids of a planted row equal those of the same row with any other unseen value.
    rows = dm.splits["test"]
    again = rows.take(np.arange(len(rows)))
    again.categorical["native_country"] = ["Never-Seen"] * len(rows)
    again.categorical["workclass"] = ["Also-Unseen"] * len(rows)
    assert torch.equal(dm.features.encode(again)["wide"], test["wide"])
    assert dm.categorical_cardinalities == [len(vocab[c]) + 1 for c in CATEGORICAL]


def test_numerics_are_standardised_with_train_statistics(tmp_path):
    # The test rows are far older than the train rows: train statistics put them far out.
    tiny_adult(tmp_path, n=100, test={"age": "500"})
    dm = AdultDataModule(data_dir=str(tmp_path))
    dm.setup()
    age = NUMERIC.index("age")
    train_ages = dm.splits["train"].numeric[:, age]
    train = dm.split_dataset("train").tensors["numeric"][:, age].double()
    assert train.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    expected = (500 - train_ages.mean()) / train_ages.std()
    test = dm.split_dataset("test").tensors["numeric"][:, age]
    assert torch.allclose(test, torch.full_like(test, expected), rtol=1e-5)
    # capital_gain is log1p-transformed before standardising, still with train statistics
    gain = NUMERIC.index("capital_gain")
    logs = np.log1p(dm.splits["train"].numeric[:, gain])
    assert dm.features.mean[gain] == pytest.approx(logs.mean())


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("39, State-gov, 77516, Bachelors, 13, Never-married", "has 6 comma-separated fields"),
        (
            "old, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
            "White, Male, 2174, 0, 40, United-States, <=50K",
            "age is 'old', not a number",
        ),
        (
            "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
            "White, Male, 2174, 0, 40, United-States, rich",
            "income is 'rich'",
        ),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_line, message):
    path = tiny_adult(tmp_path, n=20)
    lines = path.read_text().splitlines()
    # A blank line before it: skipped, but still counted in the line numbers.
    path.write_text("\n".join([*lines[:5], "", bad_line, *lines[5:]]) + "\n")
    with pytest.raises(DataError) as err:
        read_adult(path)
    assert f"{path}: line 7" in str(err.value) and message in str(err.value)


def test_cli_reports_a_malformed_row_and_exits_2(tmp_path):
    path = tiny_adult(tmp_path / "data", n=20)
    path.write_text(path.read_text() + "1, 2, 3\n")
    proc = run_cli(
        "fit", "--config", config("wide_deep_adult.yaml"), f"--data.init_args.data_dir={path.parent}",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{path}: line 21" in proc.stderr and "Traceback" not in proc.stderr


def test_read_skips_blank_lines_and_accepts_adult_test_labels(tmp_path):
    rng = random.Random(1)
    path = write_csv(tmp_path / "adult.test", [make_row(rng, income=">50K."), make_row(rng)])
    path.write_text("|1x3 Cross validator\n\n" + path.read_text() + "\n\n")
    rows = read_adult(path)
    assert len(rows) == 2 and rows.label[0] == 1.0 and rows.line.tolist() == [3, 4]


# --- the model ------------------------------------------------------------------------------
def tiny_model(parts: str, optimizer: str = "split", **kw) -> tuple[WideDeep, dict]:
    cards, wide_dim, n = [5, 4, 3], 40, 16
    gen = torch.Generator().manual_seed(0)
    batch = {
        "categorical": torch.stack([torch.randint(0, c, (n,), generator=gen) for c in cards], 1),
        "numeric": torch.randn(n, 2, generator=gen),
        "wide": torch.randint(0, wide_dim, (n, 4), generator=gen),
        "label": torch.randint(0, 2, (n,), generator=gen).float(),
    }
    model = WideDeep(cards, 2, wide_dim, parts=parts, optimizer=optimizer, n_hidden=[8], **kw)
    return model, batch


def changed(model, batch, key) -> bool:
    other = dict(batch)
    other[key] = (batch[key] + 1) % 3 if key != "numeric" else batch[key] + 1.0
    with torch.no_grad():
        return not torch.allclose(model(batch), model(other))


def test_wide_only_and_deep_only_use_only_their_part():
    wide, batch = tiny_model("wide")
    torch.nn.init.normal_(wide.wide.weight)  # zeros at init would hide a dependence
    assert wide.deep is None and changed(wide, batch, "wide")
    assert not changed(wide, batch, "numeric") and not changed(wide, batch, "categorical")

    deep, _ = tiny_model("deep")
    assert deep.wide is None and not changed(deep, batch, "wide")
    assert changed(deep, batch, "numeric") and changed(deep, batch, "categorical")

    joint, _ = tiny_model("wide_deep")
    joint.loss(batch)[0].backward()
    assert joint.wide.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in joint.deep.parameters())


def test_split_optimizers_cover_the_parts():
    joint, _ = tiny_model("wide_deep")
    ftrl, adam = joint.configure_optimizers()
    assert isinstance(ftrl, FTRLProximal) and isinstance(adam, torch.optim.Adam)
    wide_ids = {id(p) for g in ftrl.param_groups for p in g["params"]}
    deep_ids = {id(p) for g in adam.param_groups for p in g["params"]}
    assert wide_ids == {id(joint.wide.weight)}
    assert wide_ids.isdisjoint(deep_ids)
    assert wide_ids | deep_ids == {id(p) for p in joint.parameters()}
    single, _ = tiny_model("wide_deep", optimizer="adam")
    assert isinstance(single.configure_optimizers(), torch.optim.Adam)


def test_ftrl_l1_keeps_weak_features_at_exactly_zero():
    w = torch.nn.Parameter(torch.zeros(3))
    opt = FTRLProximal([w], lr=0.5, l1=1.0)
    for _ in range(5):
        w.grad = torch.tensor([0.1, -0.1, 5.0])  # |z| of the first two stays below l1
        opt.step()
    assert w[0] == 0 and w[1] == 0 and w[2] < 0


@pytest.mark.parametrize("parts", ["wide_deep", "wide", "deep"])
def test_overfits_a_tiny_batch(parts):
    model, batch = tiny_model(parts, learning_rate=0.02, wide_learning_rate=1.0)
    loader = DataLoader(TensorRows(batch), batch_size=16, collate_fn=lambda b: b)
    trainer = quiet_trainer(max_epochs=150, accelerator="cpu")
    trainer.fit(model, loader)
    assert trainer.global_step == 150  # one trainer step per batch, whatever the optimizers
    loss, logits = model.loss(batch)
    assert loss.item() < 0.05
    assert torch.equal((logits > 0).float(), batch["label"])


# --- each config through the CLI ---------------------------------------------------------------
@pytest.mark.parametrize(
    "name, parts",
    [
        ("wide_deep_adult", "wide_deep"),
        pytest.param("wide_only_adult", "wide", marks=pytest.mark.slow),
        pytest.param("deep_only_adult", "deep", marks=pytest.mark.slow),
    ],
)
def test_config_fits_and_tests(name, parts):
    need_corpus("adult")
    quick = [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=5",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
    ]
    run_cli("fit", "--config", config(f"{name}.yaml"), *quick)
    (last,) = Path.cwd().rglob("checkpoints/last.ckpt")
    state = torch.load(last, map_location="cpu", weights_only=True)
    hp = state["hyper_parameters"]
    assert hp["parts"] == parts and state["global_step"] == 5
    # the linked facts of the data: 8 categoricals, 6 numerics, the wide index space
    assert len(hp["categorical_cardinalities"]) == 8 and hp["num_numeric"] == 6
    assert hp["wide_dim"] == sum(hp["categorical_cardinalities"]) + 12 + 3 * 1000
    proc = run_cli(
        "test", "--config", config(f"{name}.yaml"), f"--ckpt_path={last}",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false",
    )  # fmt: skip
    for metric in ("test/acc", "test/auroc", "test/loss"):
        assert metric in proc.stdout


class RecordsGradNorms(WideDeep):
    """Records the gradient norm each optimizer steps with."""

    def on_before_optimizer_step(self, optimizer):
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        self.norms.append((type(optimizer).__name__, norm.item()))


def test_model_gradient_clip_val_clips_each_optimizer():
    _, batch = tiny_model("wide_deep")
    model = RecordsGradNorms([5, 4, 3], 2, 40, n_hidden=[8], gradient_clip_val=1e-3)
    model.norms = []
    loader = DataLoader(TensorRows(batch), batch_size=16, collate_fn=lambda b: b)
    trainer = quiet_trainer(max_steps=3, accelerator="cpu")
    trainer.fit(model, loader)
    assert sorted({name for name, _ in model.norms}) == ["Adam", "FTRLProximal"]
    assert len(model.norms) == 6 and all(norm <= 1e-3 * 1.0001 for _, norm in model.norms)
