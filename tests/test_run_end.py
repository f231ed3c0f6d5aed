"""Every run ends with a usable checkpoint: a short run (max_steps within the first epoch or
below val_check_interval) validates at its end and writes last.ckpt; SIGTERM and Ctrl+C save
one and exit non-zero saying where it is."""

from __future__ import annotations

import signal

import pytest
import torch

from tests.conftest import config, run_cli

QUICK = [
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
    "--trainer.limit_val_batches=2",
]
# An epoch-based recurrent model: validation and early stopping come at the end of an epoch
# of ~4,000 batches, which max_steps=3 never reaches.
LSTM = [
    "--config", config("lstm_shakespeare_char.yaml"),
    "--model.init_args.n_layer=1", "--model.init_args.n_embd=8", "--model.init_args.n_hidden=8",
    "--data.init_args.block_size=8", "--data.init_args.batch_size=4",
    "--trainer.callbacks.max_new_tokens=5",  # the last callback: TextSamples
]  # fmt: skip
# A step-based GPT whose first evaluation would come at step 250.
GPT = [
    "--config", config("gpt_shakespeare_char_cpu.yaml"),
    "--model.init_args.n_layer=1", "--model.init_args.n_head=2", "--model.init_args.n_embd=16",
    "--data.init_args.block_size=8", "--data.init_args.batch_size=4",
    "--trainer.val_check_interval=250",
]  # fmt: skip


def last_checkpoint(tmp_path) -> dict:
    (path,) = tmp_path.glob("csv/**/checkpoints/last.ckpt")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("recipe", [LSTM, GPT], ids=["epoch-based", "step-based"])
def test_a_short_run_validates_at_its_end_and_leaves_last_ckpt(tmp_path, recipe):
    run_cli("fit", *recipe, *QUICK, "--trainer.max_steps=3")
    checkpoint = last_checkpoint(tmp_path)
    assert checkpoint["global_step"] == 3
    assert list(tmp_path.glob("csv/**/checkpoints/best-*.ckpt"))  # val/loss was computed


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_a_signal_saves_last_ckpt_and_exits_non_zero_saying_where(tmp_path, signum):
    stop = [
        "--trainer.callbacks+=tests.interruptions.SignalAtStep",
        "--trainer.callbacks.step=2",
        f"--trainer.callbacks.signum={int(signum)}",
    ]
    before = signal.getsignal(signal.SIGINT)  # Python's default; ignored in a background job
    proc = run_cli("fit", *GPT, *QUICK, "--trainer.max_steps=50", *stop, check=False)
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    (path,) = tmp_path.glob("csv/**/checkpoints/last.ckpt")
    name = signal.Signals(signum).name
    saved = path.relative_to(tmp_path)
    assert f"stopped by {name} at step 3: checkpoint saved to {saved}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert last_checkpoint(tmp_path)["global_step"] == 3  # the step under way finished
    assert signal.getsignal(signal.SIGINT) is before  # handed back
    resumed = run_cli("fit", *GPT, *QUICK, "--trainer.max_steps=5", "--ckpt_path", str(path))
    steps = [
        torch.load(p, weights_only=True)["global_step"] for p in tmp_path.glob("csv/**/last.ckpt")
    ]
    assert resumed.returncode == 0 and 5 in steps
