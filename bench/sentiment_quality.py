"""Quality of the SST-2 sentiment classifier against the target: dev accuracy >= 85%.

configs/sentiment_lstm_sst2.yaml is trained through the CLI as a user runs it, in a fresh
folder under bench/runs/sentiment_quality/:

    python main.py fit  --config configs/sentiment_lstm_sst2.yaml
    python main.py test --config configs/sentiment_lstm_sst2.yaml --ckpt_path <the best checkpoint>

SST-2's test labels are hidden, so the figure is dev accuracy: the best checkpoint's val/acc
(what ModelCheckpoint kept) and the `test` run's test/acc and test/f1, which read dev.tsv again
through the saved checkpoint. Prints a table and writes bench/results/sentiment_quality.json.

    python bench/sentiment_quality.py                   # the config as it is
    python bench/sentiment_quality.py --max-epochs 2    # fewer epochs (a slow machine)
    python bench/sentiment_quality.py --max-steps 200   # a quick check of the plumbing

A quick check (--max-steps) writes bench/results/sentiment_quality-quick.json instead. Runs
use one intra-op thread (--threads) unless told otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
from pathlib import Path

import torch
from common import cli, cli_test, machine_info, results_file, write_report

ROOT = Path(__file__).resolve().parents[1]

CONFIG = "sentiment_lstm_sst2"
TARGET_ACC = 0.85
RUNS = ROOT / "bench" / "runs" / "sentiment_quality"


def best_checkpoint_facts(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    (key,) = (k for k in state["callbacks"] if k.startswith("ModelCheckpoint{'monitor': 'val/acc'"))
    n_params = sum(v.numel() for v in state["state_dict"].values() if v.is_floating_point())
    return {
        "epoch": state["epoch"],
        "step": state["global_step"],
        "val_acc": float(state["callbacks"][key]["best_model_score"]),
        "parameters": n_params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, help="default: the config's max_epochs")
    parser.add_argument("--max-steps", type=int, help="train this many steps (a quick check)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--out", type=Path, help="default: bench/results/sentiment_quality.json")
    args = parser.parse_args()
    out = results_file(args.out, "sentiment_quality", quick=bool(args.max_steps))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    config = ROOT / "configs" / f"{CONFIG}.yaml"
    folder = RUNS / f"{CONFIG}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True)

    overrides = ["--trainer.enable_progress_bar=false"]
    if args.max_epochs:
        overrides.append(f"--trainer.max_epochs={args.max_epochs}")
    if args.max_steps:
        overrides += [
            f"--trainer.max_steps={args.max_steps}",
            f"--trainer.val_check_interval={args.max_steps}",
            "--trainer.limit_val_batches=4",
        ]
    fit_s, fit_output = cli(["fit", "--config", str(config), *overrides], folder, env)
    (best,) = folder.rglob("checkpoints/best-*.ckpt")
    test_s, test = cli_test(config, best, folder, env)
    facts = best_checkpoint_facts(best)
    epoch_times = [float(s) for s in re.findall(r"time/epoch_s[^0-9]*([0-9.]+)", fit_output)]
    run = {
        "config": f"configs/{CONFIG}.yaml",
        "overrides": overrides,
        "best_epoch": facts["epoch"],
        "best_step": facts["step"],
        "dev_acc": facts["val_acc"],
        "target_dev_acc": TARGET_ACC,
        "meets_target": facts["val_acc"] >= TARGET_ACC,
        "test_run_dev_acc": test.get("test/acc"),
        "test_run_dev_f1": test.get("test/f1"),
        "test_run_dev_loss": test.get("test/loss"),
        "parameters": facts["parameters"],
        "fit_seconds": round(fit_s, 1),
        "test_seconds": round(test_s, 1),
        "epoch_seconds": epoch_times or None,
        "checkpoint": str(best.relative_to(ROOT)),
    }
    print(
        f"\n{'config':<36} {'best ep':>7} {'dev acc':>7} {'target':>6} {'ok':>3} {'dev F1':>6} {'fit':>7}"
    )
    print(
        f"{run['config']:<36} {run['best_epoch']:>7} {run['dev_acc']:>7.4f} {TARGET_ACC:>6.2f} "
        f"{'yes' if run['meets_target'] else 'NO':>3} {run['test_run_dev_f1'] or float('nan'):>6.4f} "
        f"{run['fit_seconds']:>6.0f}s"
    )
    write_report(
        out,
        note="SST-2 test labels are hidden: validation and test both read dev.tsv",
        machine=machine_info(),
        runs=[run],
    )


if __name__ == "__main__":
    main()
