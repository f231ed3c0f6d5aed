"""Deep networks on tabular data: the hand-written layers and losses equal PyTorch's, the data
(seeded split, train-only statistics, CSV files and their errors), the MLP, and each config
through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from core.errors import DataError, SettingError
from datamodules.adult import TensorRows
from datamodules.tabular import TabularDataModule
from lit_models.losses import focal_loss, huber_loss
from lit_models.modules.layers import BatchNorm1d, Linear
from lit_models.tabular_mlp import TabularMLP
from tests.conftest import assert_one_clear_error, config, quiet_trainer, run_cli


# --- hand-written pieces against PyTorch's -------------------------------------------------
def test_linear_equals_nn_linear():
    torch.manual_seed(0)
    ours, theirs = Linear(7, 5), nn.Linear(7, 5)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 7, requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs)
    grad = torch.randn(4, 5)
    g_ours = torch.autograd.grad(y_ours, (x, ours.weight, ours.bias), grad)
    g_theirs = torch.autograd.grad(y_theirs, (x, theirs.weight, theirs.bias), grad)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b)
    # the same default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    big = Linear(100, 2000)
    bound = 1 / 10
    assert big.weight.abs().max() <= bound and big.weight.abs().max() > 0.99 * bound
    assert big.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.02)


def test_batchnorm_equals_nn_batchnorm1d_in_train_and_eval():
    torch.manual_seed(0)
    ours, theirs = BatchNorm1d(6), nn.BatchNorm1d(6)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
    theirs.load_state_dict(ours.state_dict())
    for step in range(3):  # training: batch statistics, running averages updated
        x = torch.randn(8, 6) * (step + 1) + step
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ours, y_theirs = ours(x1), theirs(x2)
        torch.testing.assert_close(y_ours, y_theirs)
        grad = torch.randn_like(x)
        torch.testing.assert_close(
            torch.autograd.grad(y_ours, x1, grad)[0], torch.autograd.grad(y_theirs, x2, grad)[0]
        )
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name))
    ours.eval(), theirs.eval()  # evaluation: the running statistics, even for one example
    x = torch.randn(1, 6)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_equals_nn_huberloss(delta):
    torch.manual_seed(0)
    prediction, target = torch.randn(64) * 3, torch.randn(64) * 3
    p1, p2 = prediction.clone().requires_grad_(), prediction.clone().requires_grad_()
    ours, theirs = huber_loss(p1, target, delta), nn.HuberLoss(delta=delta)(p2, target)
    torch.testing.assert_close(ours, theirs)
    ours.backward(), theirs.backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    per_example = huber_loss(prediction, target, delta, reduction="none")
    torch.testing.assert_close(
        per_example, F.huber_loss(prediction, target, delta=delta, reduction="none")
    )


def test_focal_loss_is_cross_entropy_at_gamma_0_and_spares_easy_examples():
    torch.manual_seed(0)
    logits, target = torch.randn(32, 4), torch.randint(0, 4, (32,))
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target)
    )
    alpha = [0.1, 0.2, 0.3, 0.4]
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, alpha=alpha, reduction="none"),
        F.cross_entropy(logits, target, reduction="none") * torch.tensor(alpha)[target],
    )
    # An easy example (p_t = 0.9) loses far more of its loss than a hard one (p_t = 0.1).
    easy = torch.log(torch.tensor([[0.9, 0.1]]))
    hard = torch.log(torch.tensor([[0.1, 0.9]]))
    zero = torch.tensor([0])
    ratio = {
        name: (focal_loss(x, zero, gamma=2.0) / F.cross_entropy(x, zero)).item()
        for name, x in (("easy", easy), ("hard", hard))
    }
    assert ratio["easy"] == pytest.approx(0.1**2) and ratio["hard"] == pytest.approx(0.9**2)


# --- data -------------------------------------------------------------------------------------
def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def tiny_csv(path: Path, n: int = 40, target: str = "kind") -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        a, b = rng.normal(size=2)
        rows.append(f"{a:.4f},{b * 10 + 100:.4f},{'big' if a > 0 else 'small'},{i}")
    return write_csv(path, f"a,b,{target},c", rows)


def test_split_is_seeded_stratified_disjoint_and_complete():
    splits = [TabularDataModule("breast_cancer", split_seed=s).splits for s in (7, 7, 8)]
    same, other = splits[0], splits[2]
    assert all(np.array_equal(same[s]["rows"], splits[1][s]["rows"]) for s in same)
    assert not np.array_equal(same["test"]["rows"], other["test"]["rows"])
    together = np.concatenate([same[s]["rows"] for s in ("train", "val", "test")])
    assert sorted(together.tolist()) == list(range(569))
    assert len(same["test"]["rows"]) == 114  # 20%
    shares = [same[s]["target"].mean() for s in ("train", "val", "test")]
    assert max(shares) - min(shares) < 0.02  # stratified: the same share of each class


def test_standardisation_uses_train_statistics_only():
    dm = TabularDataModule("diabetes")
    dm.setup()
    train = dm.split_dataset("train").tensors["features"].double()
    torch.testing.assert_close(
        train.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(10, dtype=torch.float64))
    raw_train, raw_test = dm.splits["train"]["features"], dm.splits["test"]["features"]
    expected = (raw_test - raw_train.mean(0)) / raw_train.std(0)
    test = dm.split_dataset("test").tensors["features"].numpy()
    np.testing.assert_allclose(test, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(test.mean(0), 0, atol=1e-3)  # test statistics were not used
    # the regression target's statistics come from train too, for the model (linked)
    assert dm.target_mean == pytest.approx(dm.splits["train"]["target"].mean())
    assert dm.target_std == pytest.approx(dm.splits["train"]["target"].std())
    assert (dm.task, dm.num_classes, dm.num_features) == ("regression", None, 10)


def test_digits_constant_pixels_stay_finite():
    dm = TabularDataModule("digits")
    dm.setup()
    features = dm.split_dataset("train").tensors["features"]
    assert torch.isfinite(features).all() and dm.num_classes == 10 and dm.num_features == 64


def test_csv_with_a_named_target(tmp_path):
    path = tiny_csv(tmp_path / "t.csv")
    dm = TabularDataModule("csv", csv_path=str(path), target="kind")
    assert (dm.task, dm.num_classes, dm.num_features) == ("classification", 2, 3)
    dm.setup()
    assert sum(len(dm.split_dataset(s)) for s in ("train", "val", "test")) == 40
    # a numeric target is a regression target unless the task says otherwise
    numbers = write_csv(tmp_path / "n.csv", "a,y,b", [f"{i},{i % 4},{i * i}" for i in range(20)])
    numeric = TabularDataModule("csv", csv_path=str(numbers), target="y")
    assert (numeric.task, numeric.num_classes, numeric.num_features) == ("regression", None, 2)
    classes = TabularDataModule("csv", csv_path=str(numbers), target="y", csv_task="classification")
    assert classes.num_classes == 4


@pytest.mark.parametrize(
    "header, row, fragments",
    [
        ("a,b,kind,c", "1.0,oops,big,3", ["line 7", "column 'b' is 'oops', not a number"]),
        ("a,b,kind,c", "1.0,2.0,big", ["line 7 has 3 fields, the header 4"]),
        (
            "a,b,label,c",
            "1.0,2.0,big,3",
            ["line 1 (the header) has no column 'kind'", "a, b, label, c"],
        ),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, header, row, fragments):
    good = tiny_csv(tmp_path / "t.csv", n=10).read_text().splitlines()[1:]
    path = write_csv(tmp_path / "bad.csv", header, [*good[:4], "", row, *good[4:]])
    with pytest.raises(DataError) as err:
        TabularDataModule("csv", csv_path=str(path), target="kind").table  # noqa: B018
    assert str(path) in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_downloaded_data_set_offline_says_so(tmp_path):
    dm = TabularDataModule("california_housing", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match="not in .* and no network reaches it"):
        dm.table  # noqa: B018 (the tests run with HF_HUB_OFFLINE=1)


# --- the model ------------------------------------------------------------------------------
def test_settings_are_checked():
    with pytest.raises(SettingError, match="model.init_args.num_classes must be at least 2"):
        TabularMLP(4, task="classification", num_classes=None)
    with pytest.raises(
        SettingError, match="model.init_args.loss=huber is not a classification loss"
    ):
        TabularMLP(4, num_classes=3, loss="huber")
    with pytest.raises(SettingError, match="data.init_args.dataset=csv needs"):
        TabularDataModule("csv")


def test_hand_written_layers_give_the_same_network():
    torch.manual_seed(0)
    kw = dict(num_features=5, num_classes=3, n_layer=3, n_hidden=8, norm="batch", residual=True)
    theirs, ours = TabularMLP(**kw), TabularMLP(**kw, layers="hand_written")
    assert isinstance(ours.blocks[0].linear, Linear) and isinstance(
        ours.blocks[1].norm, BatchNorm1d
    )
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(16, 5)
    torch.testing.assert_close(ours(x), theirs(x))
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize(
    "task, kw",
    [
        ("classification", dict(num_classes=3, norm="batch", layers="hand_written", loss="focal")),
        (
            "regression",
            dict(norm="layer", residual=True, loss="huber", target_mean=50.0, target_std=10.0),
        ),
    ],
)
def test_overfits_a_batch(task, kw):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 6, generator=gen)
    label = (
        torch.randint(0, 3, (32,), generator=gen)
        if task == "classification"
        else 50 + 10 * torch.randn(32, generator=gen)
    )
    model = TabularMLP(6, task=task, n_layer=3, n_hidden=64, learning_rate=0.01, **kw)
    loader = DataLoader(
        TensorRows({"features": x, "label": label}), batch_size=32, collate_fn=lambda b: b
    )
    quiet_trainer(max_epochs=200, accelerator="cpu").fit(model, loader)
    model.eval()
    with torch.no_grad():
        prediction = model.predict_step({"features": x}, 0)
    if task == "classification":
        assert torch.equal(prediction.argmax(-1), label)
    else:  # in the target's own units
        assert (prediction - label).abs().max() < 1.0


def test_initialisations():
    def std_of(init, **kw):
        model = TabularMLP(64, num_classes=2, n_layer=2, n_hidden=256, init=init, **kw)
        return model.blocks[1].linear.weight.std().item()

    assert std_of("small_normal", init_std=0.01) == pytest.approx(0.01, rel=0.05)
    assert std_of("xavier") == pytest.approx((2 / 512) ** 0.5, rel=0.05)
    assert std_of("kaiming", activation="relu") == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    assert std_of("default") == pytest.approx(1 / (3 * 256) ** 0.5, rel=0.05)


# --- through the CLI ----------------------------------------------------------------------------
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",  # a logger merges the model's and the data's hparams
    "--trainer.logger.save_dir=runs",
]


@pytest.mark.parametrize(
    "name, metrics",
    [("mlp_breast_cancer", ("test/acc", "test/loss")), ("mlp_diabetes", ("test/r2", "test/rmse"))],
)
def test_config_fits_and_tests(name, metrics):
    run_cli("fit", "--config", config(f"{name}.yaml"), *QUICK)
    (last,) = Path.cwd().rglob("checkpoints/last.ckpt")
    hp = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["num_features"] == {"mlp_breast_cancer": 30, "mlp_diabetes": 10}[name]
    if name == "mlp_diabetes":  # the linked train statistics of the target
        assert (
            hp["task"] == "regression" and 140 < hp["target_mean"] < 165 and hp["target_std"] > 50
        )
    else:
        assert hp["task"] == "classification" and hp["num_classes"] == 2
    proc = run_cli("test", "--config", config(f"{name}.yaml"), f"--ckpt_path={last}", *QUICK[1:])
    for metric in metrics:
        assert metric in proc.stdout


def test_cli_reports_a_bad_csv_and_exits_2(tmp_path):
    path = tiny_csv(tmp_path / "t.csv")
    path.write_text(path.read_text() + "1,2,big,x\n")
    proc = run_cli(
        "fit", "--config", config("mlp_digits.yaml"), "--data.init_args.dataset=csv",
        f"--data.init_args.csv_path={path}", "--data.init_args.target=kind", *QUICK,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_clear_error(proc, f"{path}: line 42, column 'c' is 'x', not a number")


def first_and_last_gradient(**kw) -> tuple[float, float]:
    torch.manual_seed(0)
    model = TabularMLP(64, num_classes=10, n_layer=20, n_hidden=64, activation="sigmoid", **kw)
    x, label = torch.randn(64, 64), torch.randint(0, 10, (64,))
    model.loss(model(x), label).backward()
    layers = model.linear_layers()
    return layers[0].weight.grad.norm().item(), layers[-2].weight.grad.norm().item()


def test_deep_sigmoid_gradients_vanish_unless_initialised_or_connected_well():
    # 20 sigmoid layers with N(0, 0.01^2) weights: the first layer's gradient is lost, many
    # orders of magnitude below the last hidden layer's (float32 rounds it to 0); residual
    # connections and batch norm carry it back.
    first, last = first_and_last_gradient(init="small_normal")
    assert first < 1e-20 * last
    first, last = first_and_last_gradient(init="small_normal", residual=True)
    assert first > 1e-2 * last
    first, last = first_and_last_gradient(init="small_normal", norm="batch")
    assert first > 1e-3 * last
