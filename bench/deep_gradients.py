"""A 20-layer network on digits, five ways: how initialisation, the activation, batch norm and
residual connections decide whether the gradient reaches the first layers, and what accuracy
each reaches.

configs/deep_mlp_digits.yaml (20 sigmoid layers of 64, N(0, 0.01^2) weights, SGD with
momentum) is trained through the CLI as a user runs it, with the GradientFlow callback
recording each weight matrix's gradient norm every few steps, once per variant:

    small-normal sigmoid   the config as it is
    Xavier sigmoid         --model.init_args.init=xavier
    Kaiming ReLU           --model.init_args.activation=relu --model.init_args.init=kaiming
    batch norm             --model.init_args.norm=batch
    residual               --model.init_args.residual=true

    python main.py fit  --config configs/deep_mlp_digits.yaml [variant] \\
        --trainer.callbacks+=callbacks.GradientFlow --trainer.callbacks.every_n_steps=10
    python main.py test --config configs/deep_mlp_digits.yaml [variant] --ckpt_path <last.ckpt>

Every run trains the same epochs (the config's 30) and is tested at its end (last.ckpt).
Writes bench/results/deep_gradients.json and one figure, bench/results/deep_gradients.png:
the gradient norm of each layer's weights at the first step and averaged over training, one
line per variant, with the test accuracy each reached.

    python bench/deep_gradients.py
    python bench/deep_gradients.py --max-epochs 1     # a quick check of the plumbing
    python bench/deep_gradients.py --plot-only        # redraw the figure from the JSON
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import re
import statistics
from pathlib import Path

import torch
from common import cli, cli_test, machine_info, results_file, write_report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "deep_mlp_digits.yaml"
RUNS = ROOT / "bench" / "runs" / "deep_gradients"
VARIANTS = {
    "small-normal sigmoid": [],
    "Xavier sigmoid": ["--model.init_args.init=xavier"],
    "Kaiming ReLU": ["--model.init_args.activation=relu", "--model.init_args.init=kaiming"],
    "batch norm": ["--model.init_args.norm=batch"],
    "residual": ["--model.init_args.residual=true"],
}
LAYER = re.compile(r"grad/(?:blocks\.(\d+)\.linear|output)\.weight$")


def layer_norms(save_dir: Path) -> dict[int, list[float]]:
    """The GradientFlow rows of the run's CSV log: {step: [norm of layer 1 .. output layer]}."""
    (path,) = save_dir.rglob("metrics.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if LAYER.match(c)]
    # blocks.0 .. blocks.19, then output: by block number, the output last
    columns.sort(key=lambda c: int(LAYER.match(c).group(1) or 10**6))
    by_step: dict[int, list[float]] = {}
    for row in rows:
        if row.get(columns[0]):
            by_step[int(row["step"])] = [float(row[c]) for c in columns]
    return by_step


def run_variant(name: str, options: list[str], args, env: dict[str, str]) -> dict:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = RUNS / f"{re.sub(r'[^a-z]+', '_', name.lower())}-{stamp}"
    folder.mkdir(parents=True)
    fit = [
        *options,
        f"--seed_everything={args.seed}",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=fit_csv",
        "--trainer.callbacks+=callbacks.GradientFlow",
        f"--trainer.callbacks.every_n_steps={args.every}",
    ]
    if args.max_epochs:
        fit.append(f"--trainer.max_epochs={args.max_epochs}")
    fit_s, _ = cli(["fit", "--config", str(CONFIG), *fit], folder, env)
    (last,) = folder.rglob("checkpoints/last.ckpt")
    _, test = cli_test(CONFIG, last, folder, env, extra=options)
    norms = layer_norms(folder / "fit_csv")
    steps = sorted(norms)
    per_layer = list(zip(*(norms[s] for s in steps), strict=True))
    return {
        "variant": name,
        "options": options,
        "test_acc": round(test["test/acc"], 4),
        "epochs": torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1,
        "grad_norm_first_step": norms[steps[0]],
        # the geometric mean over the measured steps: the norms span many orders of magnitude
        "grad_norm_mean_over_training": [
            math.exp(statistics.fmean(math.log(max(v, 1e-300)) for v in layer))
            for layer in per_layer
        ],
        "steps_measured": len(steps),
        "fit_seconds": round(fit_s, 1),
    }


def plot(runs: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure  # off-screen, no pyplot state

    figure = Figure(figsize=(10, 4))
    for column, (key, title) in enumerate(
        (
            ("grad_norm_first_step", "at the first step"),
            ("grad_norm_mean_over_training", "over training (geom. mean)"),
        )
    ):
        ax = figure.add_subplot(1, 2, column + 1)
        for run in runs:
            values = run[key]
            ax.plot(
                range(1, len(values) + 1),
                values,
                marker="o",
                markersize=3,
                label=f"{run['variant']} (test acc {run['test_acc']:.3f})",
            )
        ax.set_yscale("log")
        ax.set_xlabel("layer (1 = input side; the last is the output layer)")
        ax.set_ylabel("gradient norm of the weights")
        ax.set_title(f"20-layer MLP on digits: gradient norm, {title}", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        if column == 0:
            ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=VARIANTS, nargs="+", default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=int, default=10, help="measure every this many steps")
    parser.add_argument("--max-epochs", type=int, help="train this many epochs (a quick check)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--out", type=Path, help="default: bench/results/deep_gradients.json")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure of --out")
    args = parser.parse_args()
    quick = bool(args.max_epochs)
    out = results_file(args.out, "deep_gradients", quick=quick)
    figure = out.with_suffix(".png")
    if args.plot_only:
        plot(json.loads(out.read_text())["runs"], figure)
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    torch.set_num_threads(args.threads)

    runs = [run_variant(name, VARIANTS[name], args, env) for name in args.only]

    print(f"\n{'variant':<22} {'test acc':>8}  grad norm at step 0: layer 1, 10, 20, output")
    for r in runs:
        g = r["grad_norm_first_step"]
        print(
            f"{r['variant']:<22} {r['test_acc']:>8.4f}  "
            + ", ".join(f"{g[i]:.2e}" for i in (0, 9, len(g) - 2, len(g) - 1))
        )
    plot(runs, figure)
    print(f"figure: {figure}")
    write_report(
        out,
        machine=machine_info(),
        data="scikit-learn's digits, seeded stratified 65/15/20 split (split_seed 42)",
        figure=str(figure.relative_to(ROOT)) if figure.is_relative_to(ROOT) else str(figure),
        layers="blocks.0 .. blocks.19 (the hidden layers' weights), then the output layer",
        runs=runs,
    )


if __name__ == "__main__":
    main()
