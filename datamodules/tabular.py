"""Tabular data as rows of numeric features and one target, for classification or regression.

Sources (`split_dataset`):
- the data sets scikit-learn ships inside its package, read without a network: `digits`
  (8x8 handwritten digits, 10 classes, 1,797 rows), `breast_cancer` (2 classes, 569),
  `wine` (3 classes, 178) and `diabetes` (regression, 442);
- `california_housing` (regression, 20,640) and `fashion_mnist` (10 classes, 70,000 28x28
  images as 784 features), through scikit-learn's own loaders, which download them once
  into the cache folder: offline, a missing copy stops with a message saying so;
- `csv`: a local file with a header row, every column numeric but the target (`target`
  names it), whose values are class names (classification) or numbers (regression).

The rows are split train/val/test with `split_seed` (stratified by class for classification,
so that a small split holds every class in proportion). Each feature is standardised with the
mean and deviation of the train split only. A regression target is batched in its own units,
with its train mean and deviation as facts (`target_mean`, `target_std`, linked by the CLI):
the model trains on the target standardised with them, and reports metrics in its units.

`test_file` and `predict_file` are CSV files with a header that names the training columns
(in any order; extra columns are ignored) and the target column (`target`, else "target";
optional for `predict_file`). They are read with what was fitted on train, carried by every
checkpoint (datamodules/fitted_state.py): the feature names, the standardisation, the class
names (a bundled data set's classes are its ids, 0, 1, ...) and the target's statistics.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch

from core.checks import require_held_out_fractions, require_non_negative, require_positive
from core.constants import Split
from core.errors import DataError, SettingError
from core.hub import hub_offline
from datamodules.adult import TensorRows
from datamodules.cache import cache_root
from datamodules.fitted_state import FittedState
from datamodules.loaders import SplitLoaders, whole_batch
from datamodules.paths import reachable, resolve_eval_file

log = logging.getLogger(__name__)

Dataset = Literal[
    "digits",
    "breast_cancer",
    "wine",
    "diabetes",
    "california_housing",
    "fashion_mnist",
    "csv",
]
Task = Literal["classification", "regression"]
BUNDLED: dict[str, Task] = {
    "digits": "classification",
    "breast_cancer": "classification",
    "wine": "classification",
    "diabetes": "regression",
}
# Downloaded by scikit-learn's loaders, with the host each one reads from.
DOWNLOADED: dict[str, tuple[Task, str]] = {
    "california_housing": ("regression", "https://ndownloader.figshare.com"),
    "fashion_mnist": ("classification", "https://api.openml.org"),
}


@dataclass
class Table:
    """Features [N, F] float64 and targets [N]: class ids (int64) or values (float64)."""

    features: np.ndarray
    target: np.ndarray
    task: Task
    num_classes: int | None  # None for regression
    feature_names: list[str]
    classes: list[str] | None = None  # the class names in id order (default: the ids)

    def __post_init__(self):
        if self.classes is None and self.num_classes is not None:
            self.classes = [str(i) for i in range(self.num_classes)]


# --- reading ----------------------------------------------------------------------------------
def load_bundled(name: str) -> Table:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    task = BUNDLED[name]
    target = bunch.target.astype(np.int64 if task == "classification" else np.float64)
    classes = int(target.max()) + 1 if task == "classification" else None
    return Table(bunch.data.astype(np.float64), target, task, classes, list(bunch.feature_names))


def load_downloaded(name: str, data_home: Path) -> Table:
    """California housing or Fashion-MNIST from scikit-learn's copy in `data_home`, fetched
    there first when missing and a network is there."""
    from sklearn import datasets

    task, host = DOWNLOADED[name]
    online = not hub_offline() and reachable(host)
    try:
        if name == "california_housing":
            bunch = datasets.fetch_california_housing(
                data_home=str(data_home), download_if_missing=online
            )
            features, target, names = bunch.data, bunch.target, list(bunch.feature_names)
        else:
            bunch = datasets.fetch_openml(
                "Fashion-MNIST",
                version=1,
                data_home=str(data_home),
                as_frame=False,
                parser="liac-arff",
                download_if_missing=online,
            )
            features, target = bunch.data / 255.0, bunch.target.astype(np.int64)
            names = [f"pixel{i}" for i in range(features.shape[1])]
    except OSError as err:
        why = "no network reaches it" if not online else f"the download failed ({err})"
        raise DataError(
            f"data: {name} is not in {data_home} and {why}. Run once with a network (scikit-learn "
            f"downloads it there), or copy scikit-learn's data folder of a machine that has it "
            f"to {data_home} (data.init_args.cache_dir moves it)."
        ) from err
    if task == "classification":
        return Table(features.astype(np.float64), target, task, int(target.max()) + 1, names)
    return Table(features.astype(np.float64), target.astype(np.float64), task, None, names)


def read_csv(path: Path, target: str, task: Task | None) -> Table:
    """A CSV with a header: every column a number but `target`. Without `task`, a target that
    is all numbers is a regression target, else class names (sorted, ids 0..C-1)."""
    if not path.is_file():
        raise DataError(
            f"data.init_args.csv_path: {path} does not exist. Point data.init_args.csv_path at a CSV file "
            "with a header row (and data.init_args.target at its target column)."
        )
    names, features, labels = read_csv_rows(path, target)
    return _table_of(features, labels, names, path, target, task)


def read_csv_rows(
    path: Path, target: str, labelled: bool = True
) -> tuple[list[str], np.ndarray, list[str] | None]:
    """(feature column names, features [N, F], target fields) of a CSV with a header; unless
    `labelled`, the target column may be missing (then None)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows.")
    header = [name.strip() for name in rows[0]]
    if target not in header and labelled:
        raise DataError(
            f"{path}: line 1 (the header) has no column {target!r}; its columns are "
            f"{', '.join(header)}. Set data.init_args.target to one of them."
        )
    column = header.index(target) if target in header else None
    features, labels = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(field.strip() for field in row):
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {number} has {len(row)} fields, the header {len(header)}. "
                "Fix or delete that line."
            )
        values = []
        for name, field in zip(header, row, strict=True):
            if name == target:
                continue
            try:
                value = float(field)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(
                    f"{path}: line {number}, column {name!r} is {field!r}, not a number. "
                    "Fix or delete that line."
                )
            values.append(value)
        features.append(values)
        labels.append(row[column].strip() if column is not None else "")
    if not labels:
        raise DataError(f"{path}: the file holds a header but no rows.")
    names = [name for name in header if name != target]
    width = len(names)
    return (
        names,
        np.asarray(features, dtype=np.float64).reshape(-1, width),
        labels if column is not None else None,
    )


def _table_of(
    features: np.ndarray, labels: list[str], names: list[str], path: Path, target: str, task
) -> Table:
    numbers = []
    for label in labels:
        try:
            numbers.append(float(label))
        except ValueError:
            break
    numeric = len(numbers) == len(labels) and all(math.isfinite(v) for v in numbers)
    task = task or ("regression" if numeric else "classification")
    if task == "regression":
        if not numeric:
            bad = next(i for i, v in enumerate(labels) if not _is_number(v))
            raise DataError(
                f"{path}: the regression target {target!r} is {labels[bad]!r} in data row "
                f"{bad + 1}, not a number. Fix the file, or set data.init_args.csv_task=classification."
            )
        return Table(features, np.asarray(numbers, dtype=np.float64), task, None, names)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{path}: the target {target!r} has one class only ({classes[0]!r}).")
    ids = {c: i for i, c in enumerate(classes)}
    target_ids = np.asarray([ids[v] for v in labels])
    return Table(features, target_ids, task, len(classes), names, classes)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --- the split and the standardisation ----------------------------------------------------
def split_rows(table: Table, val_fraction: float, test_fraction: float, seed: int):
    """Row indices of train/val/test, shuffled with `seed`; stratified by class for
    classification. Disjoint, and together every row."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(table.target))
    stratify = table.target if table.task == "classification" else None
    rest, test = train_test_split(
        rows, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    stratify = table.target[rest] if stratify is not None else None
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed,
        stratify=stratify,
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


@dataclass
class Standardiser:
    """(x - mean) / std per column, with the statistics of the rows it was fitted on; a
    constant column (std 0, such as digits' border pixels) stays 0."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


@dataclass
class FittedTable:
    """What the train split decides about every other row: the columns and their order, the
    standardisation, the task, the class names (id order) and a regression target's
    statistics. Plain data, so that checkpoints carry it (`vars` / `FittedTable(**state)`)."""

    feature_names: list[str]
    mean: list[float]
    std: list[float]
    task: Task
    classes: list[str] | None
    target_mean: float
    target_std: float

    @property
    def standardiser(self) -> Standardiser:
        return Standardiser(np.asarray(self.mean), np.asarray(self.std))

    def read(self, path: Path, target: str, labelled: bool) -> dict[str, np.ndarray]:
        """{features, target} of a CSV file to evaluate: its columns taken by name in the
        train order; class names mapped to the train ids (an unknown one is an error, there
        is no class to read it as); no target column (unless `labelled`): NaN targets."""
        names, features, labels = read_csv_rows(path, target, labelled)
        missing = [n for n in self.feature_names if n not in names]
        if missing:
            raise DataError(
                f"{path}: line 1 (the header) lacks the column(s) {', '.join(missing)} that the "
                f"model was trained on; it needs {', '.join(self.feature_names)} (any order) and "
                f"{target!r}."
            )
        features = features[:, [names.index(n) for n in self.feature_names]]
        if labels is None:
            return {"features": features, "target": np.full(len(features), np.nan)}
        if self.task == "regression":
            bad = [i for i, v in enumerate(labels) if not _is_number(v)]
            if bad:
                raise DataError(
                    f"{path}: the regression target {target!r} is {labels[bad[0]]!r} in data "
                    f"row {bad[0] + 1}, not a number."
                )
            return {"features": features, "target": np.asarray(labels, dtype=np.float64)}
        ids = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({v for v in labels if v not in ids})
        if unknown:
            raise DataError(
                f"{path}: the target {target!r} holds class(es) the model was not trained on: "
                f"{', '.join(map(repr, unknown[:5]))}; its classes are "
                f"{', '.join(map(repr, self.classes))}."
            )
        return {"features": features, "target": np.asarray([ids[v] for v in labels])}


# --- the datamodule -------------------------------------------------------------------------
class TabularDataModule(FittedState, SplitLoaders, L.LightningDataModule):
    """Batches of {features [B, F] float32 standardised, label [B]} (see the module docstring).

    The facts the model is built from (`num_features`, `task`, `num_classes`, `target_mean`,
    `target_std`) are read when first asked for (from the train split, or the checkpoint's
    restored state), and linked to the model by the CLI."""

    def __init__(
        self,
        dataset: Dataset = "digits",
        csv_path: str | None = None,
        target: str | None = None,
        csv_task: Task | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        split_seed: int = 42,
        batch_size: int = 64,
        eval_batch_size: int = 4096,
        num_workers: int = 0,
        cache_dir: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
    ):
        """
        Args:
            dataset: digits | breast_cancer | wine | diabetes (shipped with scikit-learn),
                california_housing | fashion_mnist (downloaded once), csv (`csv_path`).
            csv_path, target: the CSV file and the name of its target column (dataset: csv).
            csv_task: classification | regression, for a CSV; unset, a target of numbers is
                a regression target and any other a class name.
            val_fraction, test_fraction: shares of the rows in val and test; train has the rest.
            split_seed: shuffles the rows before they are split.
            cache_dir: where scikit-learn keeps the data sets it downloads (default:
                $XDG_CACHE_HOME/seqmodels/scikit_learn_data).
            test_file: a CSV file that `test` scores instead of the test split, read with the
                train split's columns, statistics and classes (a checkpoint's, with
                --ckpt_path); a path, or a file name beside `csv_path`.
            predict_file: a CSV file that `predict` reads (default: the test rows); its target
                column may be left out.
        """
        super().__init__()
        require_positive("data", batch_size=batch_size, eval_batch_size=eval_batch_size)
        require_non_negative("data", num_workers=num_workers)
        require_held_out_fractions(val_fraction, test_fraction, "rows")
        if dataset == "csv" and not (csv_path and target):
            raise SettingError(
                "data.init_args.dataset=csv needs data.init_args.csv_path (the file) and "
                "data.init_args.target (the name of the target column)."
            )
        if csv_task is not None and dataset != "csv":
            raise SettingError(
                f"data.init_args.csv_task is for dataset=csv; {dataset} has its own task."
            )
        self.save_hyperparameters()
        self.dataset = dataset
        self.csv_path = Path(csv_path).expanduser() if csv_path else None
        self.target, self.csv_task = target, csv_task
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed = split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.test_file, self.predict_file = test_file, predict_file
        self._table: Table | None = None
        self._splits: dict[Split, dict[str, np.ndarray]] | None = None
        self._fitted: FittedTable | None = None
        self._datasets: dict[str, TensorRows] = {}

    # --- the rows, their split, and the statistics of train --------------------------------
    @property
    def table(self) -> Table:
        if self._table is None:
            if self.dataset in BUNDLED:
                self._table = load_bundled(self.dataset)
            elif self.dataset in DOWNLOADED:
                home = cache_root(self.cache_dir) / "scikit_learn_data"
                self._table = load_downloaded(self.dataset, home)
            else:
                self._table = read_csv(self.csv_path, self.target, self.csv_task)
        return self._table

    @property
    def splits(self) -> dict[Split, dict[str, np.ndarray]]:
        """Each split's raw {features, target} (before standardisation), and its row ids."""
        if self._splits is None:
            table = self.table
            if len(table.target) < 10:
                raise DataError(f"data: {len(table.target)} rows are too few to split; give 10.")
            try:
                index = split_rows(table, self.val_fraction, self.test_fraction, self.split_seed)
            except ValueError as err:  # stratification of a class with one row
                raise DataError(f"data: the rows cannot be split by class ({err}).") from err
            self._splits = {
                name: {"features": table.features[i], "target": table.target[i], "rows": i}
                for name, i in index.items()
            }
        return self._splits

    @property
    def fitted(self) -> FittedTable:
        """What was fitted on the train split (or restored from a checkpoint)."""
        if self._fitted is None:
            table, train = self.table, self.splits["train"]
            scale = Standardiser.fit(train["features"])
            regression = table.task == "regression"
            self._fitted = FittedTable(
                feature_names=[str(n) for n in table.feature_names],  # not numpy's str_
                mean=scale.mean.tolist(),
                std=scale.std.tolist(),
                task=table.task,
                classes=None if regression else [str(c) for c in table.classes],
                target_mean=float(train["target"].mean()) if regression else 0.0,
                target_std=(float(train["target"].std()) or 1.0) if regression else 1.0,
            )
        return self._fitted

    @property
    def standardiser(self) -> Standardiser:
        return self.fitted.standardiser

    # The shape of the table needs no split: read from the table unless restored.
    @property
    def num_features(self) -> int:
        fitted = self._fitted
        return len(fitted.feature_names) if fitted else self.table.features.shape[1]

    @property
    def task(self) -> Task:
        return self._fitted.task if self._fitted else self.table.task

    @property
    def num_classes(self) -> int | None:
        if self._fitted is None:
            return self.table.num_classes
        return None if self._fitted.classes is None else len(self._fitted.classes)

    @property
    def target_mean(self) -> float:
        return self.fitted.target_mean

    @property
    def target_std(self) -> float:
        return self.fitted.target_std

    # --- FittedState: the columns, statistics and classes travel in checkpoints -----------
    def fitted_state(self) -> dict:
        return dict(vars(self.fitted))

    def restore_fitted(self, state: dict) -> None:
        self._fitted = FittedTable(**state)

    def restored(self) -> None:
        self._datasets.clear()  # standardised with the statistics fitted here: build again

    # --- the datasets, built when a loader first asks (after a checkpoint's restore) -------
    def split_dataset(self, name: str) -> TensorRows:
        """A split standardised, or `test_file` for "test", `predict_file` for "predict"."""
        if name not in self._datasets:
            rows = self._rows(name)
            target = rows["target"]
            if self.task == "classification":
                # A file to predict may have no target: its rows are labelled -1, no class.
                label = torch.tensor(np.nan_to_num(target, nan=-1), dtype=torch.long)
            else:
                label = torch.tensor(target, dtype=torch.float32)
            features = torch.tensor(self.standardiser(rows["features"]), dtype=torch.float32)
            self._datasets[name] = TensorRows({"features": features, "label": label})
        return self._datasets[name]

    def _rows(self, name: str) -> dict[str, np.ndarray]:
        key = {"test": "test_file", "predict": "predict_file"}.get(name)
        file = getattr(self, key) if key else None
        if name == "predict" and file is None:
            return self._rows("test")
        if file is None:
            return self.splits[name]
        path = resolve_eval_file(file, self.csv_path.parent if self.csv_path else Path.cwd(), key)
        return self.fitted.read(path, self.target or "target", labelled=name == "test")

    train_set = property(lambda self: self.split_dataset("train"))
    val_set = property(lambda self: self.split_dataset("val"))
    test_set = property(lambda self: self.split_dataset("test"))

    def predict_dataloader(self):
        return self.loader(self.split_dataset("predict"), self.eval_batch_size)

    # --- Lightning hooks -------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        # Nothing to build yet: Lightning restores a checkpoint's fitted state after setup,
        # so the datasets are built when the loaders ask for them (`split_dataset`).
        pass

    def train_dataloader(self):
        # Never more than the train split, so that dropping a ragged last batch (it would
        # upset batch norm) still leaves one.
        return self.loader(self.train_set, min(self.batch_size, len(self.train_set)), train=True)

    def collate_fn(self):
        return whole_batch
