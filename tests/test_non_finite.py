"""A NaN or inf never reaches a checkpoint: the run stops at the step it appears, with one
message and exit status 2, and the checkpoints on disk keep the last finite state."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from callbacks.non_finite import NonFiniteError, StopOnNonFinite
from tests.conftest import TINY_GPT, config, run_cli


class Poisoned(L.LightningModule):
    """A linear regression whose training loss (or gradient) turns NaN at step `bad_step`."""

    def __init__(self, bad_step: int | tuple[int, ...], where: str):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.bad_steps = bad_step if isinstance(bad_step, tuple) else (bad_step,)
        self.where = where

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.global_step + 1 in self.bad_steps:
            poison = torch.tensor(float("nan"))
            loss = (
                loss * poison
                if self.where == "loss"
                else loss + 0 * self.layer.weight.sum() * poison
            )
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader():
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    return DataLoader(data, batch_size=4)


def finite_checkpoint(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(t).all() for t in state.values())


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_the_run_stops_at_the_bad_step_and_last_ckpt_stays_finite(tmp_path, where):
    trainer = L.Trainer(
        max_steps=12,
        val_check_interval=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            StopOnNonFinite(),
            ModelCheckpoint(dirpath=tmp_path, filename="last", enable_version_counter=False),
        ],
    )
    model = Poisoned(bad_step=5, where=where)
    with pytest.raises(NonFiniteError, match="step 5"):
        trainer.fit(model, loader(), loader())
    last = tmp_path / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4  # the validation before
    assert finite_checkpoint(last)
    assert torch.isfinite(model.layer.weight).all()  # the NaN gradient never reached them


def fit_poisoned(bad_steps: tuple[int, ...], max_skipped_steps: int) -> tuple:
    guard = StopOnNonFinite(max_skipped_steps=max_skipped_steps)
    trainer = L.Trainer(
        max_steps=12,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[guard],
    )
    model = Poisoned(bad_step=bad_steps, where="gradient")
    return trainer, model, guard


def test_up_to_max_skipped_steps_bad_steps_are_skipped():
    trainer, model, guard = fit_poisoned((5, 9), max_skipped_steps=2)
    before = {}

    class Watch(L.Callback):  # the weights of the steps before and after a skipped one
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            before[trainer.global_step] = pl_module.layer.weight.detach().clone()

    trainer.callbacks.append(Watch())
    with pytest.warns(UserWarning, match="step 5: the gradients are not finite.*1 of at most 2"):
        trainer.fit(model, loader())
    assert trainer.global_step == 12 and guard.skipped_steps == 2
    assert torch.equal(before[4], before[5])  # step 5 left the weights as they were
    assert not torch.equal(before[5], before[6])  # and training went on
    assert torch.isfinite(model.layer.weight).all()


def test_one_bad_step_more_than_allowed_stops_the_run():
    trainer, model, guard = fit_poisoned((5, 9), max_skipped_steps=1)
    with pytest.raises(NonFiniteError, match="step 9 .* after 1 skipped steps"):
        trainer.fit(model, loader())
    assert torch.isfinite(model.layer.weight).all()


def test_a_diverging_fit_ends_with_one_message_and_no_nan_checkpoint():
    proc = run_cli(
        "fit",
        "--config",
        config("gpt_shakespeare_char.yaml"),
        *TINY_GPT,
        "--model.init_args.learning_rate=1e6",
        "--model.init_args.warmup_steps=10",
        "--trainer.val_check_interval=2",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=csv",
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (message,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "step" in message and "learning rate" in message
    assert "not finite" in message or "is nan" in message
    assert all(finite_checkpoint(path) for path in Path("csv").rglob("*.ckpt"))


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    from cli.checkpoints import load_weights
    from core.errors import UserError

    model = Poisoned(bad_step=0, where="loss")
    state = {name: t.clone() for name, t in model.state_dict().items()}
    state["layer.weight"][0, 0] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "diverged.ckpt")
    with pytest.raises(UserError, match="NaN or inf weights .*layer.weight"):
        load_weights(model, str(tmp_path / "diverged.ckpt"))
    assert torch.isfinite(model.layer.weight).all()
