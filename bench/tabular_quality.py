"""Quality of the tabular MLP against scikit-learn on the same split, in one run: test accuracy
on digits and breast cancer (targets: >= 97% and >= LogisticRegression's), test R^2 on
diabetes (beside LinearRegression and GradientBoostingRegressor).

Each config is trained through the CLI as a user runs it, in a fresh folder under bench/runs/,
once per seed (`--seeds`; the split stays the config's, split_seed 42):

    python main.py fit  --config configs/mlp_<data>.yaml --seed_everything=<seed>
    python main.py test --config configs/mlp_<data>.yaml --ckpt_path <the best checkpoint>

The best checkpoint is the one with the lowest val/loss (ModelCheckpoint's choice): the test
split is read once, at the end. The scikit-learn models are fitted on the same train rows,
standardised with the same train statistics (the suite's TabularDataModule builds both), and
scored on the same test rows. Prints one table and writes bench/results/tabular_quality.json.

    python bench/tabular_quality.py                       # seeds 1 2 3
    python bench/tabular_quality.py --only mlp_diabetes --seeds 1
    python bench/tabular_quality.py --max-epochs 2        # a quick check of the plumbing
    python bench/tabular_quality.py --only mlp_breast_cancer --split-seeds 0 1 2 3 4 5 6 7 8 9

The last compares means over ten seeded splits (one run on each, scikit-learn on the same
rows) and writes bench/results/tabular_quality-splits.json: a test split of 114 rows moves by
a few rows, 2-3 points of accuracy, from one draw to the next.

A quick check writes bench/results/tabular_quality-quick.json instead.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
from pathlib import Path

import torch
import yaml
from common import cli, cli_test, machine_info, results_file, write_report

from datamodules.tabular import TabularDataModule

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {  # config: (the figure compared, the MLP's target)
    "mlp_digits": ("acc", 0.97),
    "mlp_breast_cancer": ("acc", 0.97),
    "mlp_diabetes": ("r2", None),
}
RUNS = ROOT / "bench" / "runs" / "tabular_quality"


def baselines(name: str, split_seed: int | None = None) -> dict[str, float]:
    """The scikit-learn models' test figure, fitted on the config's train split (or on the
    split that `split_seed` draws)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import accuracy_score, r2_score

    settings = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["data"]
    if split_seed is not None:
        settings["init_args"]["split_seed"] = split_seed
    data = TabularDataModule(**settings["init_args"])
    train, test = data.split_dataset("train").tensors, data.split_dataset("test").tensors
    x, y = train["features"].numpy(), train["label"].numpy()
    x_test, y_test = test["features"].numpy(), test["label"].numpy()
    if data.task == "classification":
        model = LogisticRegression(max_iter=10_000).fit(x, y)
        return {"LogisticRegression": accuracy_score(y_test, model.predict(x_test))}
    return {
        "LinearRegression": r2_score(y_test, LinearRegression().fit(x, y).predict(x_test)),
        "GradientBoostingRegressor": r2_score(
            y_test, GradientBoostingRegressor(random_state=0).fit(x, y).predict(x_test)
        ),
    }


def judged(mlp: float, target: float | None, reference: dict[str, float]) -> dict:
    """The target of a classification config and whether the MLP's figure meets it: at
    least `target` and at least LogisticRegression's (regression configs have none)."""
    if target is None:
        return {"target": None, "meets_target": None}
    return {
        "target": f">= {target} and >= LogisticRegression",
        "meets_target": mlp >= target and mlp >= reference["LogisticRegression"],
    }


def run_mlp(
    name: str, seed: int, max_epochs: int | None, env: dict[str, str], split_seed: int | None = None
) -> dict:
    config = ROOT / "configs" / f"{name}.yaml"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    split = "" if split_seed is None else f"-split{split_seed}"
    folder = RUNS / f"{name}-seed{seed}{split}-{stamp}"
    folder.mkdir(parents=True)
    overrides = [
        f"--seed_everything={seed}",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=fit_csv",
    ]
    if max_epochs:
        overrides.append(f"--trainer.max_epochs={max_epochs}")
    split_option = [] if split_seed is None else [f"--data.init_args.split_seed={split_seed}"]
    fit_s, _ = cli(["fit", "--config", str(config), *overrides, *split_option], folder, env)
    (best,) = folder.rglob("checkpoints/best-*.ckpt")
    _, test = cli_test(config, best, folder, env, split_option)
    state = torch.load(best, map_location="cpu", weights_only=True)
    return {
        "seed": seed,
        "best_epoch": state["epoch"],
        **{key: round(value, 4) for key, value in test.items()},
        "fit_seconds": round(fit_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CONFIGS, nargs="+", default=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max-epochs", type=int, help="train this many epochs (a quick check)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument(
        "--split-seeds",
        type=int,
        nargs="+",
        help="instead: one run (the first --seeds) on each of these seeded splits, beside "
        "scikit-learn on the same split; the means over splits are compared",
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/tabular_quality.json")
    args = parser.parse_args()
    name = "tabular_quality-splits" if args.split_seeds else "tabular_quality"
    out = results_file(args.out, name, quick=bool(args.max_epochs))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    torch.set_num_threads(args.threads)
    if args.split_seeds:
        over_splits(args, env, out)
        return

    results = []
    for name in args.only:
        metric, target = CONFIGS[name]
        runs = [run_mlp(name, seed, args.max_epochs, env) for seed in args.seeds]
        scores = [r[f"test/{metric}"] for r in runs]
        reference = baselines(name)
        mean = statistics.mean(scores)
        results.append(
            {
                "config": f"configs/{name}.yaml",
                "metric": f"test {metric}",
                "mlp_mean": round(mean, 4),
                "mlp_by_seed": scores,
                "baselines": {k: round(v, 4) for k, v in reference.items()},
                **judged(mean, target, reference),
                "runs": runs,
            }
        )

    print(f"\n{'config':<32} {'metric':<9} {'MLP mean':>8}  {'MLP by seed':<24} baselines")
    for r in results:
        seeds = ", ".join(f"{s:.4f}" for s in r["mlp_by_seed"])
        refs = ", ".join(f"{k} {v:.4f}" for k, v in r["baselines"].items())
        ok = "" if r["meets_target"] is None else ("  met" if r["meets_target"] else "  NOT met")
        print(f"{r['config']:<32} {r['metric']:<9} {r['mlp_mean']:>8.4f}  {seeds:<24} {refs}{ok}")
    write_report(
        out,
        machine=machine_info(),
        data="scikit-learn's digits, breast_cancer, diabetes; seeded 65/15/20 split "
        "(split_seed 42, stratified by class for classification); features standardised "
        "with train statistics; scikit-learn models fitted on the same train rows",
        seeds=args.seeds,
        results=results,
    )


def over_splits(args: argparse.Namespace, env: dict[str, str], out: Path) -> None:
    """One MLP run and the scikit-learn models on each seeded split: a test split of a small
    table (114 rows of breast cancer) moves by a few rows from one draw to the next, so
    the comparison is of means over splits, each split scored by both."""
    results = []
    for name in args.only:
        metric, target = CONFIGS[name]
        by_split = []
        for split_seed in args.split_seeds:
            run = run_mlp(name, args.seeds[0], args.max_epochs, env, split_seed)
            reference = {k: round(v, 4) for k, v in baselines(name, split_seed).items()}
            by_split.append(
                {"split_seed": split_seed, "mlp": run[f"test/{metric}"], **reference, "run": run}
            )
            print(f"{name} split {split_seed}: MLP {run[f'test/{metric}']:.4f}, {reference}")
        means = {
            key: round(statistics.mean(r[key] for r in by_split), 4) for key in ("mlp", *reference)
        }
        results.append(
            {
                "config": f"configs/{name}.yaml",
                "metric": f"test {metric}",
                "means": means,
                "mlp_by_split": [r["mlp"] for r in by_split],
                **judged(means["mlp"], target, means),
                "by_split": by_split,
            }
        )
        met = results[-1]["meets_target"]
        print(f"{name}: means over {len(by_split)} splits {means}; target met: {met}")
    write_report(
        out,
        machine=machine_info(),
        data="scikit-learn's digits, breast_cancer, diabetes; seeded 65/15/20 splits "
        f"(split_seed {', '.join(map(str, args.split_seeds))}, stratified by class for "
        "classification); features standardised with each split's train statistics; "
        "scikit-learn models fitted on the same train rows",
        seed=args.seeds[0],
        results=results,
    )


if __name__ == "__main__":
    main()
