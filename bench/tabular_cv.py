"""How a tabular config's settings are chosen without looking at its test rows: 5-fold
stratified cross-validation on the train and val rows together, over a grid of the MLP's
settings, each fold standardised with its own training rows' statistics. The accuracy of every
setting is read after 25, 50, 100 and 200 epochs; LogisticRegression is scored on the same
folds for reference. Prints the best settings and writes bench/results/tabular_cv-<config>.json.

    python bench/tabular_cv.py --config mlp_breast_cancer
    python bench/tabular_cv.py --config mlp_digits --grid n_hidden=64,256 dropout=0,0.2

A grid entry is `setting=v1,v2,...` for any of TabularMLP's numeric or choice settings; the
rest stay the config's. The training loop is the model's own loss and optimiser
(configure_optimizers), batches of the config's batch_size, reshuffled every epoch.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from common import machine_info, results_file, write_report

from datamodules.tabular import Standardiser, TabularDataModule
from lit_models.tabular_mlp import TabularMLP

ROOT = Path(__file__).resolve().parents[1]
EPOCHS_READ = (25, 50, 100, 200)
DEFAULT_GRID = {
    "n_layer": [1, 2],
    "n_hidden": [16, 64],
    "dropout": [0.0, 0.3],
    "weight_decay": [0.1, 1.0, 3.0],
}


def parse_grid(entries: list[str]) -> dict[str, list]:
    grid = {}
    for entry in entries:
        name, _, values = entry.partition("=")
        grid[name] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def standardised_folds(x, y, folds) -> list[tuple[torch.Tensor, ...]]:
    """(x_train, y_train, x_held, y_held) of each fold, standardised with its train rows."""
    out = []
    for train, held in folds:
        scale = Standardiser.fit(x[train])
        out.append(
            (
                torch.tensor(scale(x[train]), dtype=torch.float32),
                torch.tensor(y[train], dtype=torch.long),
                torch.tensor(scale(x[held]), dtype=torch.float32),
                torch.tensor(y[held], dtype=torch.long),
            )
        )
    return out


def fold_accuracies(settings: dict, folds, batch_size: int, seed: int) -> np.ndarray:
    """[fold, epoch read] accuracy of one setting over `standardised_folds`."""
    scores = np.zeros((len(folds), len(EPOCHS_READ)))
    for f, (xt, yt, xh, yh) in enumerate(folds):
        torch.manual_seed(seed)
        model = TabularMLP(**settings)
        optimiser = model.configure_optimizers()
        for epoch in range(1, max(EPOCHS_READ) + 1):
            model.train()
            order = torch.randperm(len(yt))
            for start in range(0, len(order) - batch_size + 1, batch_size):  # drop a ragged end
                batch = order[start : start + batch_size]
                loss = model.loss(model(xt[batch]), yt[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if epoch in EPOCHS_READ:
                model.eval()
                with torch.no_grad():
                    accuracy = (model(xh).argmax(-1) == yh).float().mean().item()
                scores[f, EPOCHS_READ.index(epoch)] = accuracy
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mlp_breast_cancer")
    parser.add_argument("--grid", nargs="+", help="setting=v1,v2 ... (default: a small grid)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    config = yaml.safe_load((ROOT / "configs" / f"{args.config}.yaml").read_text())
    data = TabularDataModule(**config["data"]["init_args"])
    if data.task != "classification":
        raise SystemExit(f"{args.config}: cross-validation of accuracy needs a classification task")
    rows = [data.splits["train"], data.splits["val"]]  # never the test rows
    x = np.concatenate([r["features"] for r in rows])
    y = np.concatenate([r["target"] for r in rows]).astype(np.int64)
    folds = standardised_folds(
        x, y, StratifiedKFold(5, shuffle=True, random_state=args.seed).split(x, y)
    )
    base = {
        **config["model"]["init_args"],
        "num_features": x.shape[1],
        "num_classes": data.num_classes,
    }
    grid = parse_grid(args.grid) if args.grid else DEFAULT_GRID
    batch_size = config["data"]["init_args"].get("batch_size", 32)

    logistic = [
        LogisticRegression(max_iter=10_000)
        .fit(xt.numpy(), yt.numpy())
        .score(xh.numpy(), yh.numpy())
        for xt, yt, xh, yh in folds
    ]
    results = []
    started = time.perf_counter()
    for values in itertools.product(*grid.values()):
        chosen = dict(zip(grid, values, strict=True))
        scores = fold_accuracies({**base, **chosen}, folds, batch_size, args.seed)
        for i, epochs in enumerate(EPOCHS_READ):
            results.append(
                {**chosen, "epochs": epochs, "cv_acc": round(float(scores[:, i].mean()), 4)}
            )
        best = max(results[-len(EPOCHS_READ) :], key=lambda r: r["cv_acc"])
        print(f"{chosen}: best {best['cv_acc']:.4f} at {best['epochs']} epochs", flush=True)
    # Ties go to the first in grid order (give each list from the simplest choice).
    best = max(results, key=lambda r: r["cv_acc"])
    print(f"\nLogisticRegression 5-fold accuracy {statistics.mean(logistic):.4f}")
    print(f"best setting: {best}")
    out = results_file(None, f"tabular_cv-{args.config}", quick=False)
    write_report(
        out,
        machine=machine_info(),
        data=f"configs/{args.config}.yaml's train and val rows ({len(y)}), 5 stratified folds "
        f"(seed {args.seed}); the test rows are never read",
        seconds=round(time.perf_counter() - started),
        logistic_regression_cv_acc=round(statistics.mean(logistic), 4),
        best=best,
        results=results,
    )


if __name__ == "__main__":
    main()
