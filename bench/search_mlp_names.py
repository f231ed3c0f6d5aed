"""A hyperparameter search against the shipped config: 20 trials of optuna's TPE over the
makemore MLP's learning rate, dropout and width (configs/search/mlp_names.yaml), with median
pruning and without, and the shipped configs/mlp_names.yaml trained alike; all at the same
shortened budget (10,000 steps, a validation every 1,000), in one run on one machine.

    python main.py fit    --config configs/mlp_names.yaml <budget>
    python main.py search --config configs/mlp_names.yaml --search configs/search/mlp_names.yaml \
        --trials 20 <budget>                                   # and again with pruner: none

Reports each one's best val/loss, wall time and training steps (all trials together); pruning
should save at least a third of the steps. Writes bench/results/search_mlp_names.json.

    python bench/search_mlp_names.py                 # 20 trials (about 25 minutes on 2 cores)
    python bench/search_mlp_names.py --trials 3 --max-steps 500   # a quick check
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
from pathlib import Path

import yaml
from common import cli, machine_info, results_file, write_report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mlp_names.yaml"
SEARCH = ROOT / "configs" / "search" / "mlp_names.yaml"
RUNS = ROOT / "bench" / "runs" / "search_mlp_names"


def budget(max_steps: int) -> list[str]:
    return [
        f"--trainer.max_steps={max_steps}",
        f"--trainer.val_check_interval={max(1, max_steps // 10)}",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=CSVLogger",
    ]


def shipped(folder: Path, max_steps: int, env: dict) -> dict:
    seconds, _ = cli(
        ["fit", "--config", str(CONFIG), *budget(max_steps), "--trainer.logger.save_dir=csv"],
        folder,
        env,
    )
    (metrics,) = (folder / "csv").rglob("metrics.csv")
    with metrics.open() as f:
        losses = [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    return {"best_val_loss": min(losses), "seconds": round(seconds, 1), "steps": max_steps}


def search(folder: Path, pruner: str, trials: int, max_steps: int, env: dict) -> dict:
    spec = yaml.safe_load(SEARCH.read_text())
    spec["pruner"] = pruner
    space = folder / f"search_{pruner}.yaml"
    space.write_text(yaml.safe_dump(spec))
    args = ["search", "--config", str(CONFIG), "--search", str(space), "--trials", str(trials)]
    seconds, _ = cli([*args, *budget(max_steps)], folder, env)
    with (folder / "search" / space.stem / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = min(complete, key=lambda r: float(r["value"]))
    return {
        "pruner": pruner,
        "best_val_loss": float(best["value"]),
        "best_params": {k: best[k] for k in best if k.startswith(("model.", "data."))},
        "seconds": round(seconds, 1),
        "steps": sum(int(r["steps"] or 0) for r in rows),
        "completed": len(complete),
        "pruned": sum(r["state"] == "PRUNED" for r in rows),
        "trials": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads a run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    quick = args.trials < 20 or args.max_steps < 10_000
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "WANDB_MODE": "offline"}
    folder = RUNS / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)

    base = shipped(folder, args.max_steps, env)
    runs = {p: search(folder, p, args.trials, args.max_steps, env) for p in ("median", "none")}
    saved = 1 - runs["median"]["steps"] / runs["none"]["steps"]

    print("\n| run | best val/loss | wall s | training steps |\n|---|---|---|---|")
    print(f"| shipped config | {base['best_val_loss']:.4f} | {base['seconds']} | {base['steps']} |")
    for pruner, run in runs.items():
        label = f"search, {args.trials} trials, pruner {pruner}"
        print(f"| {label} | {run['best_val_loss']:.4f} | {run['seconds']} | {run['steps']} |")
    print(f"pruning saved {saved:.0%} of the training steps (target: at least a third)")
    write_report(
        results_file(args.out, "search_mlp_names", quick),
        machine=machine_info(),
        trials=args.trials,
        max_steps=args.max_steps,
        shipped=base,
        search_median=runs["median"],
        search_none=runs["none"],
        steps_saved_by_pruning=round(saved, 3),
        meets_target=saved >= 1 / 3,
    )


if __name__ == "__main__":
    main()
