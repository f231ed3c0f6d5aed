"""Quality of the SST-2 sentiment classifier against the target: accuracy >= 85% on whole
sentences held out of training.

configs/sentiment_lstm_sst2.yaml is trained through the CLI as a user runs it, in a fresh
folder under bench/runs/sentiment_quality/:

    python main.py fit  --config configs/sentiment_lstm_sst2.yaml
    python main.py test --config configs/sentiment_lstm_sst2.yaml --ckpt_path <the best checkpoint>

Which sentences are held out is the datamodule's choice (SST2DataModule, `held_out: auto`):
with the offline copy, whole sentences carved out of GLUE's training phrases (10% validate,
10% test, every phrase inside one of them left out of training); with the hub's files, GLUE's
872 validation sentences (then validation and test are the same set). The figures: the best
checkpoint's val/acc (what ModelCheckpoint kept) and the `test` run's test/acc and test/f1,
through the saved checkpoint. Prints a table and writes bench/results/sentiment_quality.json.

    python bench/sentiment_quality.py                   # the config as it is
    python bench/sentiment_quality.py --max-epochs 2    # fewer epochs (a slow machine)
    python bench/sentiment_quality.py --max-steps 200   # a quick check of the plumbing
    python bench/sentiment_quality.py --set model.init_args.cell=gru   # a variant

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
from common import cli, machine_info, read_test_metrics, results_file, write_report

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
    parser.add_argument("--ckpt", type=Path, help="test this checkpoint of an earlier run, no fit")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config override"
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/sentiment_quality.json")
    args = parser.parse_args()
    out = results_file(args.out, "sentiment_quality", quick=bool(args.max_steps))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    config = ROOT / "configs" / f"{CONFIG}.yaml"
    folder = RUNS / f"{CONFIG}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True)

    overrides = ["--trainer.enable_progress_bar=false", *(f"--{kv}" for kv in args.set)]
    if args.max_epochs:
        overrides.append(f"--trainer.max_epochs={args.max_epochs}")
    if args.max_steps:
        overrides += [
            f"--trainer.max_steps={args.max_steps}",
            f"--trainer.val_check_interval={args.max_steps}",
            "--trainer.limit_val_batches=4",
        ]
    if args.ckpt:
        fit_s, fit_output, best = None, "", args.ckpt.resolve()
    else:
        fit_s, fit_output = cli(["fit", "--config", str(config), *overrides], folder, env)
        (best,) = folder.rglob("checkpoints/best-*.ckpt")
    # The test logs into the checkpoint's run (<run>/test/metrics.csv): the checkpoint alone
    # rebuilds the model and the data, held-out sentences included.
    test_args = ["test", f"--ckpt_path={best}", "--trainer.enable_progress_bar=false"]
    test_s, test_output = cli([*test_args, "--trainer.logger=CSVLogger"], folder, env)
    test = read_test_metrics(best.parents[1])
    held_out = re.findall(r"sst2: .*", fit_output + test_output)[:1]
    facts = best_checkpoint_facts(best)
    epoch_times = [float(s) for s in re.findall(r"time/epoch_s[^0-9]*([0-9.]+)", fit_output)]
    run = {
        "config": f"configs/{CONFIG}.yaml",
        "overrides": overrides,
        "best_epoch": facts["epoch"],
        "best_step": facts["step"],
        "held_out": held_out[0] if held_out else None,
        "val_acc": facts["val_acc"],
        "test_acc": test.get("test/acc"),
        "test_f1": test.get("test/f1"),
        "test_loss": test.get("test/loss"),
        "target_test_acc": TARGET_ACC,
        "meets_target": (test.get("test/acc") or 0.0) >= TARGET_ACC,
        "parameters": facts["parameters"],
        "fit_seconds": round(fit_s, 1) if fit_s is not None else None,
        "test_seconds": round(test_s, 1),
        "epoch_seconds": epoch_times or None,
        "checkpoint": str(best.relative_to(ROOT) if best.is_relative_to(ROOT) else best),
    }
    print(
        f"\n{'config':<36} {'best ep':>7} {'val acc':>7} {'test acc':>8} {'target':>6} {'ok':>3} "
        f"{'test F1':>7} {'fit':>7}"
    )
    print(
        f"{run['config']:<36} {run['best_epoch']:>7} {run['val_acc']:>7.4f} "
        f"{run['test_acc'] or float('nan'):>8.4f} {TARGET_ACC:>6.2f} "
        f"{'yes' if run['meets_target'] else 'NO':>3} {run['test_f1'] or float('nan'):>7.4f} "
        f"{run['fit_seconds'] or float('nan'):>6.0f}s"
    )
    write_report(
        out,
        note=(
            "val_acc and test_acc are accuracies on whole sentences held out of training "
            "(held_out says which: carved from the offline copy, or GLUE's validation set)"
        ),
        machine=machine_info(),
        runs=[run],
    )


if __name__ == "__main__":
    main()
