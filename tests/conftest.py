"""Shared test fixtures: the offline corpora, a quiet W&B, and the CLI run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Test models are tiny: a second thread gains nothing and, on a busy 2-core machine, costs
# up to 100x in OpenMP waits. The CLI runs in subprocesses inherit the same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

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


def need_corpus(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"corpus {name} not found under {SHARED_DATA}")
    return path


@pytest.fixture
def shakespeare_dir() -> Path:
    return need_corpus("tinyshakespeare")


@pytest.fixture
def wikitext_dir() -> Path:
    return need_corpus("wikitext-2-mini")


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
        raise AssertionError(
            f"main.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def config(name: str) -> str:
    return str(ROOT / "configs" / name)
