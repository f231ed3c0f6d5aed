"""Resuming: `fit --ckpt_path last.ckpt` continues the step counter, the optimizer and the
learning-rate schedule where the interrupted run stopped."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from lit_models.optim import warmup_cosine_factor
from tests.conftest import TINY_GPT, config, run_cli, run_cli_subprocess

N = 10  # steps before the interruption; the run was planned for 2N
PEAK_LR, WARMUP, DECAY, MIN_RATIO = 1e-3, 4, 30, 0.1  # the cosine is still falling at step 2N


def expected_lr(step: int) -> float:
    return PEAK_LR * warmup_cosine_factor(step, WARMUP, DECAY, MIN_RATIO)


@pytest.mark.slow
def test_fit_resumes_steps_optimizer_and_lr_schedule(shakespeare_dir):
    args = [
        *("fit", "--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT),
        *("--trainer.logger=CSVLogger", "--trainer.logger.save_dir=runs"),
        f"--trainer.val_check_interval={N}",
        f"--model.init_args.learning_rate={PEAK_LR}",
        f"--model.init_args.warmup_steps={WARMUP}",
        f"--model.init_args.lr_decay_steps={DECAY}",
        f"--model.init_args.min_learning_rate={PEAK_LR * MIN_RATIO}",
    ]
    runs = Path("runs", "gpt_shakespeare_char")
    run_cli(*args, f"--trainer.max_steps={N}")
    first = runs / "version_0" / "checkpoints" / "last.ckpt"
    # The resume in a process of its own: all it knows of the first run is the checkpoint.
    run_cli_subprocess(*args, f"--trainer.max_steps={2 * N}", f"--ckpt_path={first}")
    resumed = runs / "version_1" / "checkpoints" / "last.ckpt"

    before = torch.load(first, map_location="cpu", weights_only=True)
    after = torch.load(resumed, map_location="cpu", weights_only=True)
    assert before["global_step"] == N
    assert after["global_step"] == 2 * N

    # The schedule went on from step N (a restart would be back in the warmup) ...
    assert before["lr_schedulers"][0]["last_epoch"] == N
    assert after["lr_schedulers"][0]["last_epoch"] == 2 * N
    for group in after["optimizer_states"][0]["param_groups"]:
        assert group["lr"] == pytest.approx(expected_lr(2 * N), rel=1e-6)
    # ... and so did AdamW: its moments were restored, not started afresh.
    for state in after["optimizer_states"][0]["state"].values():
        assert int(state["step"]) == 2 * N

    # The resumed run logged only steps after N, each with the learning rate of an unbroken run.
    with (runs / "version_1" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert min(int(row["step"]) for row in rows) >= N
    lrs = {int(row["step"]): float(row["lr-AdamW/pg1"]) for row in rows if row["lr-AdamW/pg1"]}
    assert lrs, "LearningRateMonitor logged nothing"
    for step, lr in lrs.items():
        assert lr == pytest.approx(expected_lr(step), rel=1e-6), step


def test_last_ckpt_holds_the_final_step_when_val_loss_stops_improving(shakespeare_dir):
    # At learning rate 0 the first evaluation stays the best one. Lightning 2.6's own
    # `save_last` would then leave last.ckpt at that step; the configs' second checkpoint
    # rewrites it at every evaluation, so a resume never loses the steps after the best.
    run_cli(
        *("fit", "--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT),
        *("--trainer.logger=CSVLogger", "--trainer.logger.save_dir=runs"),
        *("--trainer.max_steps=6", "--trainer.val_check_interval=2"),
        *("--model.init_args.learning_rate=0", "--model.init_args.min_learning_rate=0"),
    )
    ckpts = Path("runs", "gpt_shakespeare_char", "version_0", "checkpoints")
    (best,) = ckpts.glob("best-*.ckpt")
    assert torch.load(best, map_location="cpu", weights_only=True)["global_step"] == 2
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6
