"""Quality of Wide & Deep on UCI Adult against its wide-only and deep-only baselines: test
accuracy (target >= 85% for Wide & Deep) and AUROC, on the seeded 80/10/10 split of adult.data.

Each config is trained through the CLI as a user runs it, in a fresh folder under bench/runs/:

    python main.py fit  --config configs/<name>.yaml
    python main.py test --config configs/<name>.yaml --ckpt_path <the best checkpoint>

The best checkpoint is the one with the lowest val/loss (ModelCheckpoint's choice); its test
metrics are read from the test run's CSV log. Prints one table and writes
bench/results/wide_deep_quality.json.

    python bench/wide_deep_quality.py
    python bench/wide_deep_quality.py --only wide_deep_adult
    python bench/wide_deep_quality.py --max-epochs 2      # a quick check of the plumbing

A quick check writes bench/results/wide_deep_quality-quick.json instead, so it never overwrites
the real figures. The runs use one intra-op thread (--threads): the models are small.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

import torch
import yaml
from common import cli, cli_test, machine_info, results_file, write_report

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = ("wide_deep_adult", "wide_only_adult", "deep_only_adult")
TARGET_ACC = {"wide_deep_adult": 0.85}  # the baselines are for comparison, without a target
RUNS = ROOT / "bench" / "runs" / "wide_deep_quality"


def run_config(name: str, max_epochs: int | None, env: dict[str, str]) -> dict:
    config = ROOT / "configs" / f"{name}.yaml"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = RUNS / f"{name}-{stamp}"
    folder.mkdir(parents=True)
    overrides = ["--trainer.enable_progress_bar=false"]
    if max_epochs:
        overrides.append(f"--trainer.max_epochs={max_epochs}")
    fit_s, _ = cli(["fit", "--config", str(config), *overrides], folder, env)
    (best,) = folder.rglob("checkpoints/best-*.ckpt")
    (last,) = folder.rglob("checkpoints/last.ckpt")
    test_s, test = cli_test(config, best, folder, env)
    state = torch.load(best, map_location="cpu", weights_only=True)
    (key,) = (
        k for k in state["callbacks"] if k.startswith("ModelCheckpoint{'monitor': 'val/loss'")
    )
    target = TARGET_ACC.get(name)
    return {
        "config": f"configs/{name}.yaml",
        "parts": state["hyper_parameters"]["parts"],
        "max_epochs": max_epochs or yaml.safe_load(config.read_text())["trainer"]["max_epochs"],
        "epochs_run": torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1,
        "best_epoch": state["epoch"],
        "val_loss": float(state["callbacks"][key]["best_model_score"]),
        "test_acc": test["test/acc"],
        "test_auroc": test["test/auroc"],
        "test_loss": test["test/loss"],
        "target_test_acc": target,
        "meets_target": None if target is None else test["test/acc"] >= target,
        "parameters": sum(v.numel() for k, v in state["state_dict"].items() if "metrics" not in k),
        "fit_seconds": round(fit_s, 1),
        "test_seconds": round(test_s, 1),
        "checkpoint": str(best.relative_to(ROOT)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CONFIGS, nargs="+", default=list(CONFIGS))
    parser.add_argument("--max-epochs", type=int, help="train this many epochs (a quick check)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--out", type=Path, help="default: bench/results/wide_deep_quality.json")
    args = parser.parse_args()
    out = results_file(args.out, "wide_deep_quality", quick=bool(args.max_epochs))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    torch.set_num_threads(args.threads)

    runs = [run_config(name, args.max_epochs, env) for name in args.only]

    print(
        f"\n{'config':<30} {'parts':<9} {'epochs':>6} {'best':>4} {'val loss':>8} "
        f"{'test acc':>8} {'target':>6} {'test AUROC':>10} {'params':>7} {'fit time':>8}"
    )
    for r in runs:
        target = "-" if r["target_test_acc"] is None else f"{r['target_test_acc']:.2f}"
        ok = "" if r["meets_target"] is None else (" ok" if r["meets_target"] else " NO")
        print(
            f"{r['config']:<30} {r['parts']:<9} {r['epochs_run']:>6} {r['best_epoch']:>4} "
            f"{r['val_loss']:>8.4f} {r['test_acc']:>8.4f} {target:>6} {r['test_auroc']:>10.4f} "
            f"{r['parameters']:>7} {r['fit_seconds']:>7.0f}s{ok}"
        )
    write_report(
        out,
        machine=machine_info(),
        data="UCI Adult adult.data, seeded 80/10/10 split (split_seed 42): "
        "26,048 / 3,256 / 3,257 rows",
        runs=runs,
    )


if __name__ == "__main__":
    main()
