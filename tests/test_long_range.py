"""The long-range memory tasks (adding problem, copy memory) and the sequence model over the
suite's recurrent cells: the data is what the papers define, seeded; the model learns it with
every cell, both implementations agree; the configs fit through the CLI with GradientFlow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.long_range import LongRangeDataModule, adding_problem, copy_memory
from lit_models.sequence_model import SequenceModel
from tests.conftest import assert_one_clear_error, config, logged_metrics, run_cli

CELLS = ["rnn_tanh", "gru", "lstm"]


def batches(data: LongRangeDataModule, split: str = "train") -> list[dict]:
    data.setup("fit")
    return list(getattr(data, f"{split}_dataloader")())


# --- the data ------------------------------------------------------------------------------
def test_adding_target_is_the_sum_of_the_two_marked_values():
    seq_len = 12
    data = adding_problem(500, seq_len, torch.Generator().manual_seed(3))
    values, markers = data["inputs"][..., 0], data["inputs"][..., 1]
    assert data["inputs"].shape == (500, seq_len, 2)
    assert ((values >= 0) & (values < 1)).all()
    assert (markers.sum(1) == 2).all()
    half = seq_len // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    assert torch.allclose(data["targets"], (values * markers).sum(1))


def test_same_seed_same_data_and_splits_differ():
    first = LongRangeDataModule(seq_len=20, train_size=50, val_size=50, test_size=50, seed=7)
    again = LongRangeDataModule(seq_len=20, train_size=50, val_size=50, test_size=50, seed=7)
    other = LongRangeDataModule(seq_len=20, train_size=50, val_size=50, test_size=50, seed=8)
    for data in (first, again, other):
        data.setup("fit")
    assert torch.equal(first.train_set.tensors["inputs"], again.train_set.tensors["inputs"])
    assert torch.equal(first.test_set.tensors["targets"], again.test_set.tensors["targets"])
    assert not torch.equal(first.train_set.tensors["inputs"], other.train_set.tensors["inputs"])
    assert not torch.equal(first.train_set.tensors["inputs"], first.val_set.tensors["inputs"])


def test_adding_baseline_mse_is_one_sixth():
    targets = adding_problem(40_000, 50, torch.Generator().manual_seed(0))["targets"]
    mse = ((targets - 1.0) ** 2).mean().item()
    assert mse == pytest.approx(1 / 6, abs=0.005)
    assert LongRangeDataModule().baseline_loss == pytest.approx(1 / 6)


def test_copy_memory_repeats_the_symbols_after_the_delimiter():
    data = copy_memory(40, seq_len=6, copy_length=3, n_symbols=4, generator=torch.manual_seed(0))
    tokens = data["inputs"].argmax(-1)  # one-hot over blank, 1..4, delimiter 5
    assert data["inputs"].shape == (40, 6 + 2 * 3, 6)
    symbols = tokens[:, :3]
    assert ((symbols >= 1) & (symbols <= 4)).all()
    assert (tokens[:, 3:8] == 0).all() and (tokens[:, 8] == 5).all() and (tokens[:, 9:] == 0).all()
    assert (data["targets"][:, :9] == 0).all() and torch.equal(data["targets"][:, 9:], symbols)
    copy = LongRangeDataModule(task="copy", seq_len=6, copy_length=3, n_symbols=4)
    assert (copy.input_size, copy.output_size, copy.task_kind) == (6, 5, "classification")


def test_bad_settings_are_one_clear_error():
    proc = run_cli(
        "fit", "--config", config("lstm_adding.yaml"), "--data.init_args.seq_len=1", check=False
    )
    assert_one_clear_error(proc, "data.init_args.seq_len", "adding")


# --- the model -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_both_implementations_give_the_same_outputs(cell):
    torch.manual_seed(0)
    fused = SequenceModel(input_size=3, output_size=4, cell=cell, impl="torch", n_hidden=8)
    scratch = SequenceModel(input_size=3, output_size=4, cell=cell, impl="scratch", n_hidden=8)
    scratch.load_state_dict(fused.state_dict())
    x = torch.randn(5, 7, 3)
    assert torch.allclose(fused(x), scratch(x), atol=1e-6)


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("cell", CELLS)
def test_sequence_model_overfits_a_few_batches(cell, impl):
    torch.manual_seed(0)
    data = adding_problem(32, 8, torch.Generator().manual_seed(0))
    model = SequenceModel(input_size=2, cell=cell, impl=impl, n_hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    first = model.loss(model(data["inputs"]), data["targets"]).item()
    for _ in range(150):
        loss = model.loss(model(data["inputs"]), data["targets"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first and loss.item() < 0.02, (first, loss.item())


def test_classification_head_overfits_copy_memory():
    torch.manual_seed(0)
    data = copy_memory(16, seq_len=3, copy_length=2, n_symbols=3, generator=torch.manual_seed(1))
    model = SequenceModel(
        input_size=5, output_size=4, task_kind="classification", cell="gru", n_hidden=24
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(200):
        loss = model.loss(model(data["inputs"]), data["targets"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model(data["inputs"]).argmax(-1) == data["targets"]).all()


def test_recurrent_gain_sets_every_singular_value():
    model = SequenceModel(input_size=2, cell="gru", n_hidden=6, recurrent_gain=3.0)
    for block in model.rnn.weight_hh_l0.detach().split(6):
        assert torch.allclose(torch.linalg.svdvals(block), torch.full((6,), 3.0), atol=1e-5)
    assert isinstance(model.configure_optimizers(), torch.optim.Adam)
    sgd = SequenceModel(input_size=2, optimizer="sgd", learning_rate=0.05)
    assert isinstance(sgd.configure_optimizers(), torch.optim.SGD)


# --- through the CLI -----------------------------------------------------------------------
TINY = [
    "--model.init_args.n_hidden=8",
    "--data.init_args.seq_len=10",
    "--data.init_args.train_size=64",
    "--data.init_args.val_size=32",
    "--data.init_args.test_size=32",
    "--data.init_args.batch_size=16",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
]


def test_cli_fits_the_adding_config_with_gradient_flow():
    run_cli("fit", "--config", config("gru_adding.yaml"), *TINY)
    metrics = logged_metrics(Path("csv"))
    assert 0 < metrics["val/loss"] < 10  # 8 steps from the init: still far from the answer
    for key in ("grad/global_norm", "grad/rnn.weight_hh_l0", "update_ratio/head.weight"):
        assert key in metrics, sorted(metrics)
    for key in ("train/loss_mean", "time/train_s", "time/val_s", "time/step_ms"):
        assert key in metrics, sorted(metrics)
    (heatmap,) = Path("csv").rglob("gradient_flow/heatmap.png")
    (last,) = Path("csv").rglob("checkpoints/last.ckpt")
    hp = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert (hp["input_size"], hp["output_size"], hp["task_kind"]) == (2, 1, "regression")


def test_cli_fits_copy_memory():
    run_cli("fit", "--config", config("lstm_copy.yaml"), *TINY, "--trainer.max_epochs=1")
    metrics = logged_metrics(Path("csv"))
    assert 0 <= metrics["val/acc"] <= 1 and metrics["val/loss"] > 0
