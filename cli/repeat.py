"""`repeat`: the same `fit` over several seeds, each tested with its best checkpoint; the test
metrics as mean and standard deviation across seeds.

    python main.py repeat --config configs/mlp_names.yaml --seeds 1,2,3

Each seed is a normal run (its own folder and saved config; W&B runs grouped as
`<name>-seeds`); the table is printed and written to `repeat/<name>/summary.json`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from cli.in_process import OptionParser, build_fit, finish, parse_only, prepared, run_placement
from core.errors import UserError
from core.files import atomic_write_text
from core.runs import run_dir


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(
            f"repeat: --seeds takes integers separated by commas, got {text!r}."
        ) from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise UserError(f"repeat: --seeds needs two or more different seeds, got {text!r}.")
    return seeds


def repeat(argv: list[str]) -> None:
    parser = OptionParser(
        prog="main.py repeat",
        description="One fit per seed, each tested with its best checkpoint; mean and std of "
        "the test metrics. Other arguments (--config FILE, ...) go to every fit.",
    )
    parser.add_argument("--seeds", required=True, help="comma-separated, e.g. 1,2,3")
    parser.add_argument("--name", help="default: the (last) config file's name")
    parser.add_argument("--out_dir", help="default: repeat/<name> in this folder")
    options, fit_args = parser.parse_known_args(argv)
    seeds = parse_seeds(options.seeds)
    fit_args = prepared(fit_args)
    base = parse_only(fit_args, "the config").config
    configs = base.get("config") or []
    name = options.name or (Path(str(configs[-1])).stem if configs else "run")
    folder = Path(options.out_dir or Path("repeat") / name)

    runs = []
    for seed in seeds:
        print(f"\nrepeat: seed {seed} ({len(runs) + 1} of {len(seeds)})")
        placement = run_placement(base, folder, f"{name}-seeds", f"{name}-seed{seed}")
        cli = build_fit(fit_args + [f"--seed_everything={seed}"] + placement)
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            best = cli.trainer.checkpoint_callback.best_model_path or None
            results = cli.trainer.test(
                cli.model, datamodule=cli.datamodule, ckpt_path=best or "last", verbose=False
            )
            metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
            runs.append({"seed": seed, "run_dir": str(run_dir(cli.trainer)), "test": metrics})
        finally:
            finish()
    summary = summarise(runs)
    out = folder / "summary.json"
    atomic_write_text(out, json.dumps({"name": name, "fit_args": fit_args, **summary}, indent=2))
    print("\n" + table(summary, len(seeds)))
    print(f"\nwritten: {out}")


def summarise(runs: list[dict]) -> dict:
    """Each test metric's mean and sample standard deviation across the runs that logged it."""
    names = sorted({k for run in runs for k in run["test"]})
    metrics = {}
    for name in names:
        values = [run["test"][name] for run in runs if name in run["test"]]
        metrics[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values,
        }
    return {"runs": runs, "metrics": metrics}


def table(summary: dict, n: int) -> str:
    lines = [f"| metric | mean ± std over {n} seeds | per seed |", "|---|---|---|"]
    for name, m in summary["metrics"].items():
        per_seed = ", ".join(f"{v:.4g}" for v in m["values"])
        lines.append(f"| {name} | {m['mean']:.4g} ± {m['std']:.2g} | {per_seed} |")
    return "\n".join(lines)
