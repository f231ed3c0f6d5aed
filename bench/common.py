"""What every benchmark records: the machine it ran on, and its figures as JSON written
atomically (a killed run never leaves half a file); and how the quality benchmarks drive the
CLI as a user does."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from core.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# Trainer options of an in-process timing run: no logger, checkpoints, progress bar or summary.
QUIET_TRAINER = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import lightning

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def command_line() -> str:
    """How this benchmark was started, for its report: `python bench/<script> ARGS`."""
    return f"python bench/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:])


def results_file(out: Path | None, name: str, quick: bool) -> Path:
    """`out`, else bench/results/<name>.json; a quick check writes <name>-quick.json, so that
    it never overwrites the real figures."""
    return out or RESULTS / (f"{name}-quick.json" if quick else f"{name}.json")


def write_report(out: Path, **fields) -> None:
    """A quality benchmark's report in `out`: the command line that ran it, then `fields`."""
    write_json_atomic(out, {"command": command_line(), **fields})
    print(f"\nwritten: {out}")


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """`python main.py ARGS` in `cwd`, its output shown as it comes: (wall seconds, output)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    if proc.wait() != 0:
        raise SystemExit(f"main.py {' '.join(args)} failed (exit status {proc.returncode})")
    return time.perf_counter() - start, "".join(lines)


def read_test_metrics(save_dir: Path) -> dict[str, float]:
    """The `test/*` figures a CSVLogger last wrote under `save_dir` (a run tested again, as a
    resumed one may be, leaves one version_N folder a test)."""
    path = max(save_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for row in rows for k, v in row.items() if k.startswith("test/") and v}


def cli_test(
    config: Path, ckpt: Path, folder: Path, env: dict[str, str], extra: list[str] = ()
) -> tuple[float, dict[str, float]]:
    """`main.py test` of `ckpt` in `folder`, logged by a CSVLogger: (wall seconds, the test/*
    figures). The test of a run's checkpoint (`<run>/checkpoints/`) logs into that run
    (`<run>/test/metrics.csv`, cli/app.py), another under `folder/test_csv`. `extra` options
    go after the suite's own."""
    seconds, _ = cli(
        [
            "test",
            "--config",
            str(config),
            f"--ckpt_path={ckpt}",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=CSVLogger",
            "--trainer.logger.save_dir=test_csv",
            *extra,
        ],
        folder,
        env,
    )
    into_run = ckpt.resolve().parent.name == "checkpoints"
    return seconds, read_test_metrics(
        ckpt.resolve().parents[1] if into_run else folder / "test_csv"
    )
