"""The newcomer's path: the quick start's config by name from a folder outside the repository,
a progress line every N steps when the output is piped, and the installed `seqmodels` command.
Every test runs in its own temporary folder (conftest), outside the checkout."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from callbacks.progress_log import ProgressLog
from cli.shipped_configs import CONFIGS, resolve_config, resolve_config_args, shipped_names
from tests.conftest import ROOT, TINY_GPT, assert_one_clear_error, run_cli

QUICK_START = "gpt_shakespeare_char_cpu"
# step 12/12 (epoch 0) | train/loss 4.1809 | val/loss 4.1750 | 11,029 tokens/s | elapsed 0:00:00 | ETA 0:00:00
# (the first step's line has no ETA: the rate is measured from its end)
PROGRESS = re.compile(
    r"^step (\d+)/12 \(epoch 0\) \| train/loss \d+\.\d{4}( \| val/loss \d+\.\d{4})? \| [\d,]+ tokens/s"
    r" \| elapsed \d+:\d\d:\d\d( \| ETA \d+:\d\d:\d\d)?$"
)
QUICK = [*TINY_GPT, "--trainer.max_steps=12", "--progress.every_n_steps=5"]
CSV = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=csv"]


def test_piped_fit_of_a_config_named_from_another_folder_prints_progress(shakespeare_dir):
    assert ROOT not in Path.cwd().parents  # the folder is outside the checkout
    # stdout is captured, as a pipe would take it: not a terminal.
    proc = run_cli("fit", "--config", QUICK_START, *QUICK, *CSV)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert all(PROGRESS.match(line) for line in lines), lines
    # The first step, every 5th, and the last; once each; an ETA from the second line on.
    matches = [PROGRESS.match(line) for line in lines]
    assert [int(m.group(1)) for m in matches] == [1, 5, 10, 12]
    assert [bool(m.group(3)) for m in matches] == [False, True, True, True]
    # val/loss from the first evaluation (step 10) on.
    assert [bool(m.group(2)) for m in matches] == [False, False, False, True]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class GPTLike:  # a model that reads tokens
    hparams = {"vocab_size": 65}


@pytest.mark.parametrize(
    ("show", "terminal", "bar", "prints"),
    [
        ("auto", True, True, False),  # the progress bar shows it
        ("auto", True, False, True),  # the bar is off
        ("auto", False, True, True),  # piped
        ("never", False, True, False),
        ("always", True, True, True),
    ],
)
def test_progress_lines_show_where_the_progress_bar_cannot(
    monkeypatch, show, terminal, bar, prints
):
    monkeypatch.setattr(sys, "stdout", Terminal() if terminal else io.StringIO())
    trainer = SimpleNamespace(
        progress_bar_callback=object() if bar else None,
        is_global_zero=True,
        global_step=0,
        current_epoch=0,
        callback_metrics={},
        estimated_stepping_batches=10,
    )
    progress = ProgressLog(every_n_steps=5, show=show)
    progress.on_train_start(trainer, None)
    trainer.global_step = 1
    progress.on_train_batch_end(
        trainer, GPTLike(), {"loss": torch.tensor(2.5)}, [torch.ones(4, 8)], 0
    )
    assert sys.stdout.getvalue().startswith("step 1/10 (epoch 0) | train/loss 2.5000 |") == prints


def test_an_unknown_config_name_lists_the_shipped_configs():
    proc = run_cli("fit", "--config", "gpt_shakespeare", check=False)
    message = assert_one_clear_error(proc, "--config gpt_shakespeare", QUICK_START, "gpt_wikitext2")
    assert "defaults" not in message.split("configs:")[1]  # read by every run, not a config


def test_config_names_resolve_to_the_shipped_files_and_paths_stay_as_given(tmp_path):
    shipped = str(CONFIGS / f"{QUICK_START}.yaml")
    # The name, the file name, and the README's path run outside the repository.
    for given in (QUICK_START, f"{QUICK_START}.yaml", f"configs/{QUICK_START}.yaml"):
        assert resolve_config(given) == shipped
    assert resolve_config_args(["fit", f"--config={QUICK_START}"]) == ["fit", f"--config={shipped}"]
    own = tmp_path / "configs" / f"{QUICK_START}.yaml"  # a file of the user's own wins
    own.parent.mkdir()
    own.write_text("trainer: {}\n")
    assert resolve_config(f"configs/{QUICK_START}.yaml") == f"configs/{QUICK_START}.yaml"
    assert resolve_config("elsewhere/x.yaml") == "elsewhere/x.yaml"  # jsonargparse reports it
    assert QUICK_START in shipped_names() and "defaults" not in shipped_names()


def seqmodels_command() -> Path:
    """The console script `pip install` put beside this interpreter."""
    script = Path(sys.executable).parent / ("seqmodels.exe" if os.name == "nt" else "seqmodels")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the suite with `pip install -e .`")
    return script


@pytest.mark.slow  # a process of its own: the installed command, as a user runs it
def test_the_seqmodels_command_trains_a_shipped_config_from_another_folder(
    tmp_path, shakespeare_dir
):
    proc = subprocess.run(
        [str(seqmodels_command()), "fit", "--config", QUICK_START, *QUICK, *CSV],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [int(m.group(1)) for m in map(PROGRESS.match, proc.stdout.splitlines()) if m]
    assert steps == [1, 5, 10, 12], proc.stdout[-3000:]
    # The run folder is written where the command runs, not in the installed package.
    assert list(tmp_path.glob("**/checkpoints/last.ckpt")), sorted(tmp_path.rglob("*"))
