"""GradientFlow: per-layer gradient norms and update ratios every N steps, a heatmap, the global
norm before clipping and the step time every batch, the epoch's loss statistics; EpochTimer's
train and validation seconds."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import EpochTimer, GradientFlow
from callbacks.gradient_flow import float64_norm


class MemoryLogger(Logger):
    """Every (step, metrics) the trainer and the callbacks log, kept in a list."""

    def __init__(self, save_dir: Path):
        super().__init__()
        self.rows: list[tuple[int | None, dict]] = []
        self._save_dir = str(save_dir)

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> str:
        return "run"

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))

    def logged(self, key: str) -> list[tuple[int | None, float]]:
        return [(step, m[key]) for step, m in self.rows if key in m]


class DeepSigmoid(L.LightningModule):
    """A small stack of sigmoid layers on random regression data, trained with plain SGD."""

    def __init__(self, n_layer: int = 4, width: int = 8, lr: float = 0.5):
        super().__init__()
        layers = []
        for _ in range(n_layer):
            layers += [nn.Linear(width, width), nn.Sigmoid()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x).squeeze(-1), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    return DataLoader(TensorDataset(x, 10 * x.sum(-1)), batch_size=8)


def fit(tmp_path: Path, callbacks, **trainer_kwargs) -> MemoryLogger:
    torch.manual_seed(0)
    logger = MemoryLogger(tmp_path)
    trainer = L.Trainer(
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **trainer_kwargs,
    )
    trainer.fit(DeepSigmoid(), loader(), loader())
    return logger


def test_per_layer_norms_ratios_and_heatmap(tmp_path):
    flow = GradientFlow(every_n_steps=3)
    logger = fit(tmp_path, [flow], max_steps=10)
    weights = [f"net.{i}.weight" for i in (0, 2, 4, 6, 8)]
    assert flow.history.layers == weights  # biases only with include_biases
    assert flow.history.steps == [0, 3, 6, 9]
    for name in weights:
        norms = logger.logged(f"grad/{name}")
        assert [step for step, _ in norms] == [0, 3, 6, 9]
        assert all(value > 0 for _, value in norms)
        assert [step for step, _ in logger.logged(f"update_ratio/{name}")] == [0, 3, 6, 9]
    # Plain SGD moves W by lr * g: the ratio is lr * ||g|| / ||W_before||.
    model_lr = 0.5
    first_norms, first_ratios = flow.history.grad_norms[0], flow.history.update_ratios[0]
    torch.manual_seed(0)
    initial = DeepSigmoid()
    for name, norm, ratio in zip(weights, first_norms, first_ratios, strict=True):
        weight = initial.get_parameter(name).detach().double()
        assert ratio == pytest.approx(model_lr * norm / weight.norm().item(), rel=1e-4)  # fp32 step
    # The heatmap: a PNG in the run's folder.
    assert flow.heatmap_path == tmp_path / "memory" / "run" / "gradient_flow" / "heatmap.png"
    assert flow.heatmap_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every batch: the global norm and the step time, at steps 0..9.
    assert [step for step, _ in logger.logged("grad/global_norm")] == list(range(10))
    assert all(ms > 0 for _, ms in logger.logged("time/step_ms"))


def test_global_norm_is_taken_before_clipping(tmp_path):
    flow = GradientFlow(every_n_steps=100)
    logger = fit(tmp_path, [flow], max_steps=5, gradient_clip_val=1e-3)
    norms = [value for _, value in logger.logged("grad/global_norm")]
    assert len(norms) == 5 and all(norm > 1e-3 for norm in norms), norms


def test_epoch_loss_statistics_and_times(tmp_path):
    logger = fit(tmp_path, [GradientFlow(every_n_steps=4), EpochTimer()], max_epochs=2)
    for key in ("train/loss_mean", "train/loss_min", "train/loss_max", "time/train_s"):
        assert len(logger.logged(key)) == 2, key
    (_, low), (_, mean), (_, high) = (
        logger.logged(f"train/loss_{stat}")[0] for stat in ("min", "mean", "max")
    )
    assert low < mean < high
    epoch, train, val = (logger.logged(f"time/{k}_s")[-1][1] for k in ("epoch", "train", "val"))
    assert val > 0 and train > 0 and train + val == pytest.approx(epoch)


def test_norms_are_float64():
    tiny = torch.full((100,), 1e-25)  # a deep sigmoid net's first-layer gradients
    assert torch.linalg.vector_norm(tiny).item() == 0.0  # float32 squares underflow
    assert float64_norm([tiny]) == pytest.approx(1e-24, rel=1e-6)


def test_every_n_steps_must_be_positive():
    from core.errors import UserError

    with pytest.raises(UserError, match="every_n_steps"):
        GradientFlow(every_n_steps=0)
