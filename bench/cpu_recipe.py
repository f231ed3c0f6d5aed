"""nanoGPT's CPU recipe run through the suite's CLI, as a user runs it, against nanoGPT's figures.

    WANDB_MODE=disabled python main.py fit --config configs/gpt_shakespeare_char_cpu.yaml

is run in a scratch folder (its checkpoints and logs are thrown away) with one addition: the
`StepTimer` callback below, given with `--trainer.callbacks+=cpu_recipe.StepTimer` (this folder
is put on PYTHONPATH for that). It stamps the end of every training step and notes val/loss at
each evaluation. Training ms/step is the mean time between consecutive step ends, leaving out
the first 10 steps and the steps that ran an evaluation (validation and checkpointing are not
training time). nanoGPT gets val loss 1.886 at step 2000, at 57 ms/step (13.5k tokens/s), on
this CPU.

    python bench/cpu_recipe.py               # the full recipe, 2000 steps (a few minutes)
    python bench/cpu_recipe.py --steps 100   # a quick check; evaluates at step 100 only
    python bench/cpu_recipe.py --seeds 1337 1 2   # the spread of the final loss over seeds

Figures go to bench/results/cpu_recipe.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from common import cpu_model, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "gpt_shakespeare_char_cpu.yaml"
RECIPE_STEPS, EVAL_EVERY = 2000, 250
NANOGPT = {"val_loss": 1.886, "ms_per_step": 57.0, "tokens_per_s": 12 * 64 / 0.057}
SKIP_FIRST = 10  # steps left out of ms/step: the first ones are slow


class StepTimer(L.Callback):
    """Writes to `out` (JSON) the time at the end of each training step, the steps that were
    followed by an evaluation, and val/loss after each evaluation (sanity checks left out)."""

    def __init__(self, out: str):
        self.out = out
        self.stamps: list[float] = []
        self.evaluated_after: list[int] = []  # step counts (global_step) followed by validation
        self.val_loss: dict[int, float] = {}
        self.val_seconds = 0.0  # evaluations during training, without checkpointing
        self.tokens_per_step = 0
        self._val_start = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())
        self.tokens_per_step = batch["input_ids"].numel()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.val_seconds += time.perf_counter() - self._val_start
        self.evaluated_after.append(trainer.global_step)
        if "val/loss" in trainer.callback_metrics:
            self.val_loss[trainer.global_step] = float(trainer.callback_metrics["val/loss"])

    def on_fit_end(self, trainer, pl_module) -> None:
        record = {
            "stamps": self.stamps,
            "evaluated_after": self.evaluated_after,
            "val_loss": self.val_loss,
            "val_seconds": self.val_seconds,
            "tokens_per_step": self.tokens_per_step,
            "threads": torch.get_num_threads(),
        }
        Path(self.out).write_text(json.dumps(record))


def train_step_times(stamps: list[float], evaluated_after: list[int]) -> list[float]:
    """Seconds per step from step ends, without the first steps and those spanning an evaluation.

    stamps[i] is the end of step i + 1; the interval stamps[i] -> stamps[i + 1] is step i + 2,
    and it includes an evaluation when one ran after step i + 1."""
    evaluated = set(evaluated_after)
    return [
        stamps[i + 1] - stamps[i]
        for i in range(SKIP_FIRST, len(stamps) - 1)
        if i + 1 not in evaluated
    ]


def default_data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=RECIPE_STEPS, help="training steps (the recipe: 2000)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="$DATA_DIR: holds tinyshakespeare/",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_recipe.json")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep its checkpoints")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1337], help="one run per seed (default: 1337)"
    )
    args = parser.parse_args()
    if args.steps < SKIP_FIRST + 10:
        parser.error(f"--steps must be at least {SKIP_FIRST + 10}")
    if args.keep and len(args.seeds) > 1:
        parser.error("--keep keeps one run: give one seed with it")

    runs = [run_recipe(args, seed) for seed in args.seeds]
    report(args, runs)


def run_recipe(args, seed: int) -> dict:
    """One run of the recipe through the CLI: its figures and the command that ran."""
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cpu_recipe.") as tmp:
        scratch = str(args.keep.resolve()) if args.keep else tmp
        record_path = Path(scratch) / "steps.json"
        command = [sys.executable, str(ROOT / "main.py"), "fit", "--config", str(CONFIG)]
        command += [f"--seed_everything={seed}"]
        if args.steps != RECIPE_STEPS:  # a shorter run: its own schedule, one evaluation at the end
            every = EVAL_EVERY if args.steps % EVAL_EVERY == 0 else args.steps
            command += [
                f"--trainer.max_steps={args.steps}",
                f"--trainer.val_check_interval={every}",
            ]
        command += [
            "--trainer.callbacks+=cpu_recipe.StepTimer",
            f"--trainer.callbacks.out={record_path}",
        ]
        python_path = os.pathsep.join(
            filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")])
        )
        env = {
            **os.environ,
            "WANDB_MODE": "disabled",
            "DATA_DIR": str(args.data_dir),
            "PYTHONPATH": python_path,
        }
        print("$ WANDB_MODE=disabled " + " ".join(command[1:]), flush=True)
        print(f"training {args.steps} steps (the full recipe takes a few minutes) ...", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(
                f"main.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            )
        record = json.loads(record_path.read_text())

    times = train_step_times(record["stamps"], record["evaluated_after"])
    val_loss = {int(step): loss for step, loss in record["val_loss"].items()}
    steps_done = len(record["stamps"])
    return {
        "seed": seed,
        "command": "WANDB_MODE=disabled " + " ".join(command[1:]),
        "threads": record["threads"],
        "steps": steps_done,
        "val_loss_final": val_loss.get(steps_done),
        "val_loss": val_loss,
        "train_ms_per_step": 1000 * statistics.fmean(times),
        "train_ms_per_step_median": 1000 * statistics.median(times),
        "train_tokens_per_s": record["tokens_per_step"] / statistics.fmean(times),
        "wall_s": wall,
        "eval_s": record["val_seconds"],
    }


def report(args, runs: list[dict]) -> None:
    first = runs[0]
    steps_done, final_val, val_loss = first["steps"], first["val_loss_final"], first["val_loss"]
    ms_per_step, tokens_per_s = first["train_ms_per_step"], first["train_tokens_per_s"]
    wall, eval_time = first["wall_s"], first["eval_s"]

    print(f"\n{'':26s} {'this suite':>12s} {'nanoGPT':>12s}")
    val_cell = f"{final_val:.4f}" if final_val is not None else "-"
    ref_val = f"{NANOGPT['val_loss']:.3f}" + ("" if steps_done == RECIPE_STEPS else " @2000")
    print(f"{'val/loss at step ' + str(steps_done):26s} {val_cell:>12s} {ref_val:>12s}")
    print(f"{'train ms/step (mean)':26s} {ms_per_step:12.2f} {NANOGPT['ms_per_step']:12.1f}")
    print(f"{'train ms/step (median)':26s} {first['train_ms_per_step_median']:12.2f} {'':>12s}")
    print(f"{'train tokens/s':26s} {tokens_per_s:12,.0f} {NANOGPT['tokens_per_s']:12,.0f}")
    print(f"{'wall time, whole run (s)':26s} {wall:12.1f}")
    print(f"{'of it validating (s)':26s} {eval_time:12.1f}  (incl. the text samples)")
    print(
        "val/loss at each evaluation: "
        + ", ".join(f"{s}: {v:.4f}" for s, v in sorted(val_loss.items()))
    )
    finals = [r["val_loss_final"] for r in runs if r["val_loss_final"] is not None]
    if len(runs) > 1:
        print(f"seed {first['seed']} above; every seed:")
        for r in runs:
            print(
                f"  seed {r['seed']:>6}: val/loss {r['val_loss_final']:.4f}, "
                f"{r['train_ms_per_step']:.2f} ms/step"
            )
        if len(finals) > 1:
            print(
                f"  val/loss mean {statistics.fmean(finals):.4f}, "
                f"std {statistics.stdev(finals):.4f}, best {min(finals):.4f}"
            )
    print(
        f"torch {torch.__version__}, lightning {L.__version__}, {first['threads']} threads, {cpu_model()}"
    )

    write_json_atomic(
        args.out,
        {
            "benchmark": "cpu_recipe",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": first["command"],
            "torch": torch.__version__,
            "lightning_version": L.__version__,
            "python": platform.python_version(),
            "threads": first["threads"],
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "steps": steps_done,
            "val_loss_final": final_val,
            "val_loss": val_loss,
            "train_ms_per_step": ms_per_step,
            "train_ms_per_step_median": first["train_ms_per_step_median"],
            "train_tokens_per_s": tokens_per_s,
            "wall_s": wall,
            "eval_s": eval_time,
            "seeds": runs,
            "val_loss_final_mean": statistics.fmean(finals) if finals else None,
            "nanogpt": NANOGPT,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
