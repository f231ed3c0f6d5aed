"""Interruption drill: a tiny GPT fit killed with SIGKILL at seeded random points, some in the
middle of a checkpoint write with TMPDIR on another file system (a tmpfs where there is one),
and resumed from its last.ckpt each time, against the same fit uninterrupted.

Reports, for each seed: the kills survived, the checkpoint files left (each must load), the
temporaries of killed saves (each removed by the next run), and the end: the global step,
the largest weight difference and the val loss difference against the uninterrupted run
(the target is 0: resuming is exact on the CPU).

    python bench/interruptions.py [--seeds 3] [--max_steps 40]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import ROOT, machine_info, results_file, write_report

CONFIG = ROOT / "configs" / "gpt_shakespeare_char.yaml"
TINY = [
    *("--model.init_args.n_layer=1", "--model.init_args.n_head=2", "--model.init_args.n_embd=32"),
    *("--model.init_args.dropout=0.1", "--data.init_args.block_size=32"),
    *("--data.init_args.batch_size=8", "--trainer.limit_train_batches=7"),
    *("--trainer.val_check_interval=5", "--trainer.limit_val_batches=4"),
    *("--trainer.enable_progress_bar=false", "--trainer.logger=CSVLogger"),
    *("--model.init_args.warmup_steps=4", "--early_stopping.patience=1000"),
]


def fit(save_dir: Path, max_steps: int, *extra: str, env: dict) -> int:
    args = ["fit", "--config", str(CONFIG), *TINY, f"--trainer.logger.save_dir={save_dir}"]
    args += [f"--trainer.max_steps={max_steps}", *extra]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], env=env, capture_output=True, text=True
    )
    if proc.returncode not in (0, -9):
        raise SystemExit(f"fit failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode


def kill_option(kind: str, step: int) -> str:
    name = "KillAtStep" if kind == "at a step" else "KillDuringSave"
    key = "step" if kind == "at a step" else "at_step"
    spec = {"class_path": f"tests.interruptions.{name}", "init_args": {key: step}}
    return f"--trainer.callbacks+={json.dumps(spec)}"


def runs(save_dir: Path) -> list[Path]:
    folder = save_dir / "gpt_shakespeare_char"
    return sorted(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def last_val_loss(run: Path) -> float:
    with (run / "metrics.csv").open() as f:
        values = [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    return values[-1]


def drill(seed: int, max_steps: int, work: Path, tmpdir: Path, env: dict) -> dict:
    rng = random.Random(seed)
    save_dir = work / f"seed{seed}"
    kills, resume_from = [], None
    step = 0
    while True:
        # The next kill: somewhere after the last checkpoint, before the end; or none.
        if len(kills) < 4 and step + 2 < max_steps:
            kind = rng.choice(["at a step", "during a save"])
            at = rng.randrange(step + 1, max_steps - 1)
            extra = [kill_option(kind, at)]
        else:
            kind, extra = None, []
        if resume_from:
            extra.append(f"--ckpt_path={resume_from}")
        code = fit(save_dir, max_steps, *extra, env={**env, "TMPDIR": str(tmpdir)})
        latest = runs(save_dir)[-1]
        if code == 0:
            break
        kills.append(kind)
        # Resume from the newest last.ckpt of any run so far (a run killed before its first
        # checkpoint left none: resume from the one before).
        lasts = [r / "checkpoints" / "last.ckpt" for r in runs(save_dir)]
        lasts = [p for p in lasts if p.is_file()]
        resume_from = max(lasts, key=lambda p: torch.load(p, weights_only=True)["global_step"])
        step = torch.load(resume_from, weights_only=True)["global_step"]
    checkpoints = list(save_dir.rglob("*.ckpt"))
    loadable = sum(
        1
        for p in checkpoints
        if "state_dict" in torch.load(p, weights_only=True, map_location="cpu")
    )
    orphans = [p for p in save_dir.rglob(".*.tmp")]
    return {
        "seed": seed,
        "kills": kills,
        "checkpoints": len(checkpoints),
        "loadable": loadable,
        "orphans_left": len(orphans),
        "final": latest / "checkpoints" / "last.ckpt",
        "val_loss": last_val_loss(latest),
        "through_tmpdir": [str(p) for p in tmpdir.rglob("*") if p.is_file()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max_steps", type=int, default=40)
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="seqmodels-interruptions-"))
    shm = Path("/dev/shm")
    tmpdir = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None, prefix="tmpdir-"))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env["XDG_CACHE_HOME"] = str(work / "cache")
    try:
        fit(work / "whole", options.max_steps, env=env)
        whole_run = runs(work / "whole")[-1]
        whole = torch.load(whole_run / "checkpoints" / "last.ckpt", weights_only=True)
        whole_loss = last_val_loss(whole_run)
        rows = []
        for seed in range(options.seeds):
            row = drill(seed, options.max_steps, work, tmpdir, env)
            final = torch.load(row.pop("final"), weights_only=True)
            row["global_step"] = final["global_step"]
            row["max_weight_diff"] = max(
                (final["state_dict"][k] - t).abs().max().item()
                for k, t in whole["state_dict"].items()
            )
            row["val_loss_diff"] = row["val_loss"] - whole_loss
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)

    print(f"\nuninterrupted: step {whole['global_step']}, val/loss {whole_loss:.6f}")
    print(f"TMPDIR on {'tmpfs (/dev/shm)' if str(tmpdir).startswith('/dev/shm') else 'disk'}\n")
    print(
        "| seed | kills | checkpoints left, loadable | orphans left | step | max weight diff | val loss diff |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {len(r['kills'])} ({', '.join(r['kills'])}) | {r['checkpoints']}, "
            f"{r['loadable']} | {r['orphans_left']} | {r['global_step']} | "
            f"{r['max_weight_diff']:.3g} | {r['val_loss_diff']:.3g} |"
        )
    write_report(
        results_file(options.out, "interruptions", quick=False),
        machine=machine_info(),
        uninterrupted={"global_step": whole["global_step"], "val_loss": whole_loss},
        drills=rows,
    )


if __name__ == "__main__":
    main()
