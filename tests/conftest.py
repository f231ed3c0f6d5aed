"""Shared test fixtures: the offline corpora, a quiet W&B, and the CLI run as a user runs it."""

from __future__ import annotations

import atexit
import csv
import io
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

# Test models are tiny: a second thread gains nothing and, on a busy 2-core machine, costs
# up to 100x in OpenMP waits. The CLI runs in subprocesses inherit the same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# Nothing a test runs writes under $HOME (W&B's logs and staging, matplotlib's font cache, the
# corpora's token caches): whether $HOME is writable must not matter. Set before any test
# module imports matplotlib; each test then gets its own XDG_CACHE_HOME (_isolated_env).
_PRIVATE_HOME = Path(tempfile.mkdtemp(prefix="seqmodels-tests-"))
atexit.register(shutil.rmtree, _PRIVATE_HOME, ignore_errors=True)
for _var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR"):
    os.environ[_var] = str(_PRIVATE_HOME / _var.lower())  # MPLCONFIGDIR: one font cache

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data")).resolve()

# Tiny sizes that keep every CLI run to seconds on two CPU cores.
TINY_GPT = [
    "--model.init_args.n_layer=1",
    "--model.init_args.n_head=2",
    "--model.init_args.n_embd=32",
    "--model.init_args.dropout=0.0",
    "--data.init_args.block_size=32",
    "--data.init_args.batch_size=8",
    "--trainer.max_steps=20",
    "--trainer.val_check_interval=10",
    "--trainer.limit_val_batches=4",
    "--trainer.limit_test_batches=4",
    "--trainer.enable_progress_bar=false",
]


def data_required() -> bool:
    """CI sets SEQMODELS_REQUIRE_DATA=1: a missing corpus then fails the test instead of
    skipping it, so a run without the corpora cannot pass having tested little."""
    return os.environ.get("SEQMODELS_REQUIRE_DATA", "").lower() in ("1", "true", "yes")


def need_corpus(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        message = f"corpus {name} not found under {SHARED_DATA}"
        if data_required():
            pytest.fail(f"{message} (SEQMODELS_REQUIRE_DATA is set)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def shakespeare_dir() -> Path:
    return need_corpus("tinyshakespeare")


@pytest.fixture
def wikitext_dir() -> Path:
    return need_corpus("wikitext-2-mini")


@pytest.fixture
def online(monkeypatch):
    """A network as far as the corpora can tell (the hub calls themselves are the test's fakes:
    these machines reach no hub)."""
    from datamodules import corpus

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(corpus, "reachable", lambda url, timeout=5.0: True)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Each test runs in its own folder with its own caches and an offline, quiet W&B."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "offline"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`python main.py ARGS` as a user types it, run in this process: the same CLI, without a
    subprocess's ~10 s of imports. What the process would print to stdout and stderr (print,
    Lightning's log lines, warnings, logging's last resort) is captured; the exit status is
    what the interpreter would return (SystemExit's code, 1 and a traceback for an uncaught
    exception). Needs a real process (the interpreter's own start-up or exit, DDP, kill and
    resume)? Use `run_cli_subprocess`."""
    from cli.app import main  # here: conftest itself stays free of Lightning's imports

    out, err = io.StringIO(), io.StringIO()
    with _as_a_fresh_process(args, cwd, env, err), redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
            returncode = 0
        except SystemExit as exit_:
            returncode = _exit_status(exit_.code, err)
        except Exception:
            traceback.print_exc(file=err)  # as the interpreter prints it
            returncode = 1
        finally:
            _finish_wandb()
    proc = subprocess.CompletedProcess(
        ["main.py", *args], returncode, out.getvalue(), err.getvalue()
    )
    if check and proc.returncode != 0:
        _failed(args, proc)
    return proc


def run_cli_subprocess(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`python main.py ARGS` in a subprocess, exactly as a user types it."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd or Path.cwd(),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        _failed(args, proc)
    return proc


def assert_one_clear_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with one `error:` line and no traceback, and the message (from `error:`
    on) holds every fragment; returns the message."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-5000:]
    message = proc.stderr[proc.stderr.index("error:") :]
    for fragment in fragments:
        assert fragment in message, message
    return message


def _failed(args, proc: subprocess.CompletedProcess) -> None:
    raise AssertionError(
        f"main.py {' '.join(args)} failed ({proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )


def _exit_status(code, err: io.StringIO) -> int:
    """The status `sys.exit(code)` gives a process: None is 0, any other object is printed
    to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=err)
    return 1


# Lightning's loggers print to stderr through their own handler when the root logger has
# none (a fresh `python main.py`); under pytest the root logger has pytest's handlers.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


@contextmanager
def _as_a_fresh_process(args, cwd, env, err: io.StringIO) -> Iterator[None]:
    """What one CLI call sees and may change, set as in a new process and put back after:
    the folder, the environment, sys.argv, the loggers and warnings, torch's global flags and
    the random generators (seeded by the CLI; the test's own stream must not move)."""
    old_cwd, old_env, old_argv = Path.cwd(), dict(os.environ), sys.argv
    old_torch = (
        torch.get_num_threads(),
        torch.get_default_dtype(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_float32_matmul_precision(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.is_grad_enabled(),
    )
    old_rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    old_loggers = {
        name: (log.handlers[:], log.propagate, log.level)
        for name in LIGHTNING_LOGGERS
        for log in [logging.getLogger(name)]
    }
    root = logging.getLogger()
    last_resort = logging.StreamHandler(err)  # logging.lastResort: warnings and worse
    last_resort.setLevel(logging.WARNING)
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        sys.argv = [str(ROOT / "main.py")]  # the arguments go to main(), as a list
        for name in LIGHTNING_LOGGERS:
            log = logging.getLogger(name)
            log.handlers = [logging.StreamHandler(err)]
            log.propagate = False
            log.setLevel(logging.INFO)
        root.addHandler(last_resort)
        with warnings.catch_warnings():
            # Shown on stderr as a process shows them, not recorded by pytest.
            warnings.showwarning = partial(_show_warning, err)
            yield
    finally:
        root.removeHandler(last_resort)
        for name, (handlers, propagate, level) in old_loggers.items():
            log = logging.getLogger(name)
            log.handlers, log.propagate = handlers, propagate
            log.setLevel(level)
        threads, dtype, deterministic, warn_only, matmul, benchmark, cudnn_det, grad = old_torch
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_det
        torch.set_grad_enabled(grad)
        random.setstate(old_rng[0])
        np.random.set_state(old_rng[1])
        torch.set_rng_state(old_rng[2])
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(old_env)
        os.chdir(old_cwd)


def _show_warning(err, message, category, filename, lineno, file=None, line=None) -> None:
    err.write(warnings.formatwarning(message, category, filename, lineno, line))


def _finish_wandb() -> None:
    """What a process's exit does to W&B: finish the run the call left open, so that it takes
    no later logs, and drop wandb's settings (its mode, read once per process), so that the
    next call reads WANDB_MODE afresh."""
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()


def config(name: str) -> str:
    return str(ROOT / "configs" / name)


def logged_metrics(save_dir: Path) -> dict[str, float]:
    """The last value of every metric in the one CSVLogger file under `save_dir`."""
    (path,) = save_dir.rglob("metrics.csv")
    values: dict[str, float] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v != ""})
    return values


def evaluation_metrics(ckpt_path: str | Path, subcommand: str) -> dict[str, float]:
    """The metrics the latest `subcommand` (test, validate) of a checkpoint logged with a
    CSVLogger: into the checkpoint's run, `<run>/<subcommand>`, `<subcommand>_2`, ..."""
    logs = Path(ckpt_path).parents[1].glob(f"{subcommand}*/metrics.csv")
    return logged_metrics(max(logs, key=lambda p: p.stat().st_mtime).parent)


def quiet_trainer(**kwargs):
    """A Lightning Trainer that writes and prints nothing: no logger, checkpoints, progress
    bar or model summary; `kwargs` go to the Trainer."""
    import lightning as L  # here: conftest itself stays free of Lightning's imports

    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def overfit(model, batch: dict, optimizer, steps: int, schedule=None) -> float:
    """`steps` optimiser steps of `model.token_nll` on the one `batch` (and of `schedule`,
    when given); returns the mean loss before the first."""
    first = model.token_nll(batch).mean().item()
    for _ in range(steps):
        loss = model.token_nll(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return first


def pytest_collection_modifyitems(config, items) -> None:
    """The long end-to-end tests (`slow`) first: with `pytest -n 2` they then start at once
    and run beside the short ones, instead of leaving one worker alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
