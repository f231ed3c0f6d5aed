"""UCI Adult census income (Kohavi 1996) as the features of a Wide & Deep model.

One row is a person (15 comma-separated columns, no header); the label is whether the income
is above 50K a year. Each row becomes three tensors:

    categorical  [N, 8]  vocabulary ids of the 8 categorical columns (0 = unknown, OOV)
    numeric      [N, 6]  the 6 numeric columns, standardised (log1p first for the capital ones)
    wide         [N, F]  ids of the active features of the wide (linear) part, in one index
                         space of `wide_dim` features: each categorical's one-hot, bucketized
                         numerics (age_buckets), and hashed cross products such as
                         education x occupation (Cheng et al. 2016, section 3.1)

Everything learned from data is learned from the train split only: the vocabularies (a value
first seen in val or test reads as OOV), the mean and deviation of the numerics, and which
numeric columns need a missing indicator. `?` (missing) is a category of its own where it
occurs in train; a missing numeric reads as the train mean plus a 1 in its indicator.

The split is 80/10/10 train/val/test over the rows, shuffled with `split_seed`. (The file
holds a few exact duplicate rows, 24 of 32,561; they are split like any other row, as is usual
for this data set.)

`test_file` (UCI's adult.test as published: its first line a comment, labels ending in '.')
replaces the test split, and `predict_file` (the same columns, the income column optional) is
what `predict` reads; both are read with the vocabularies and statistics fitted on train,
which checkpoints carry (datamodules/fitted_state.py), so a checkpoint alone evaluates them.
A category never seen in train reads as OOV, and the log says how many rows held one.
"""

from __future__ import annotations

import logging
import math
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from core.checks import require_non_negative, require_positive
from core.constants import Split
from core.errors import DataError, UserError
from core.files import atomic_write_bytes
from datamodules.corpus import CorpusFolder
from datamodules.fitted_state import FittedState, evaluating_files, report_unseen
from datamodules.loaders import SplitLoaders, whole_batch
from datamodules.paths import resolve_data_dir, resolve_eval_file
from datamodules.text_files import read_lines

log = logging.getLogger(__name__)

SOURCE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.data"
FILE_NAME = "adult.data"
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
)
NUMERIC = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
CATEGORICAL = tuple(c for c in COLUMNS[:-1] if c not in NUMERIC)
LABELS = {"<=50K": 0.0, ">50K": 1.0, "<=50K.": 0.0, ">50K.": 1.0}  # adult.test ends with '.'
MISSING = "?"
OOV_ID = 0  # id 0 of every vocabulary: a value never seen in the train split
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# The census tutorial's wide part (TensorFlow's wide_n_deep_tutorial, which follows the paper).
AGE_BOUNDARIES = [18, 25, 30, 35, 40, 45, 50, 55, 60, 65]
DEFAULT_CROSSES = [
    ["education", "occupation"],
    ["age_buckets", "education", "occupation"],
    ["native_country", "occupation"],
]


# --- reading --------------------------------------------------------------------------------
@dataclass
class Rows:
    """The rows of a file, column by column: strings for categoricals, floats for numerics
    (NaN where missing), 0/1 labels, and the line each row came from."""

    categorical: dict[str, list[str]]
    numeric: np.ndarray  # [N, len(NUMERIC)] float64
    label: np.ndarray  # [N] float32
    line: np.ndarray  # [N] 1-based line numbers in the file

    def __len__(self) -> int:
        return len(self.label)

    def take(self, rows: np.ndarray) -> Rows:
        return Rows(
            {c: [v[i] for i in rows] for c, v in self.categorical.items()},
            self.numeric[rows],
            self.label[rows],
            self.line[rows],
        )


def read_adult(path: Path, labelled: bool = True) -> Rows:
    """Every row of `path`. Blank lines and lines starting with '|' (adult.test's first line)
    are skipped; a row with the wrong number of fields, a numeric field that is not a number or
    an unknown label is a DataError naming the file and the line. Unless `labelled`, a row may
    leave out the income (its label reads as NaN)."""
    categorical: dict[str, list[str]] = {c: [] for c in CATEGORICAL}
    numeric, labels, lines = [], [], []
    for number, text in enumerate(read_lines(path), start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith("|"):
            continue
        fields = [f.strip() for f in stripped.split(",")]
        where = f"{path}: line {number} ({text[:60]!r})"
        if not labelled and len(fields) == len(COLUMNS) - 1:
            fields.append("")  # no income: a row to predict
        if len(fields) != len(COLUMNS):
            expected = f"{len(COLUMNS)}" if labelled else f"{len(COLUMNS) - 1} or {len(COLUMNS)}"
            raise DataError(
                f"{where} has {len(fields)} comma-separated fields, expected {expected}: "
                f"{', '.join(COLUMNS)}. Fix or delete that line."
            )
        row = dict(zip(COLUMNS, fields, strict=True))
        values = []
        for column in NUMERIC:
            value = row[column]
            if value == MISSING:
                values.append(math.nan)
                continue
            try:
                number_value = float(value)
            except ValueError:
                number_value = math.nan
            if not math.isfinite(number_value):
                raise DataError(
                    f"{where}: {column} is {value!r}, not a number (write '?' where it is "
                    f"missing). Fix or delete that line."
                )
            values.append(number_value)
        if row["income"] not in LABELS and (labelled or row["income"]):
            raise DataError(
                f"{where}: income is {row['income']!r}; expected one of "
                f"{', '.join(sorted(LABELS))}. Fix or delete that line."
            )
        for column in CATEGORICAL:
            categorical[column].append(row[column])
        numeric.append(values)
        labels.append(LABELS.get(row["income"], math.nan))
        lines.append(number)
    if not labels:
        raise DataError(f"{path}: the file holds no rows (it is empty or blank).")
    return Rows(
        categorical,
        np.asarray(numeric, dtype=np.float64),
        np.asarray(labels, dtype=np.float32),
        np.asarray(lines, dtype=np.int64),
    )


def split_rows(n: int, seed: int) -> dict[Split, np.ndarray]:
    """Row indices of an 80/10/10 train/val/test split, shuffled with `seed`; disjoint, and
    together every row."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(SPLIT_FRACTIONS[0] * n)
    n_valid = int((SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * n)
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train:n_valid]),
        "test": np.sort(order[n_valid:]),
    }


# --- features ---------------------------------------------------------------------------------
def hash_ids(columns: Sequence[np.ndarray], buckets: int) -> np.ndarray:
    """A deterministic hash of each row's tuple of ids into [0, buckets): FNV-1a over the ids
    (Python's hash() is salted per process, so it would move features between runs)."""
    h = np.full(len(columns[0]), 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for ids in columns:
            h = (h ^ ids.astype(np.uint64)) * np.uint64(0x100000001B3)
    return (h % np.uint64(buckets)).astype(np.int64)


class AdultFeatures:
    """Vocabularies, numeric statistics and the wide layout, fitted on the train rows (`fit`)
    or restored from a checkpoint (`from_state`)."""

    def __init__(
        self,
        vocabularies: dict[str, list[str]],
        log_numeric: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        indicator_columns: Sequence[int],
        wide_buckets: dict[str, list[float]],
        crosses: Sequence[Sequence[str]],
        hash_buckets: int,
    ):
        # Vocabularies: id 0 is OOV, then the values in the order given (ids 1, 2, ...).
        self.vocabularies = {
            c: {v: i for i, v in enumerate(vocabularies[c], start=1)} for c in CATEGORICAL
        }
        self.log_numeric = list(log_numeric)
        self.log_columns = [NUMERIC.index(c) for c in log_numeric]
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.indicator_columns = list(indicator_columns)
        self.wide_buckets = {c: sorted(b) for c, b in wide_buckets.items()}
        self.crosses = [list(c) for c in crosses]
        self.hash_buckets = hash_buckets
        # The wide index space: each field's ids start at its offset.
        sizes = {c: len(v) + 1 for c, v in self.vocabularies.items()}
        # bucket i of n boundaries is [b_{i-1}, b_i); one more id for a missing value
        sizes.update({f"{c}_buckets": len(b) + 2 for c, b in self.wide_buckets.items()})
        sizes.update({" x ".join(c): hash_buckets for c in self.crosses})
        self.wide_fields = list(sizes)
        self.wide_offsets = np.cumsum([0] + list(sizes.values()))[:-1]
        self.wide_dim = int(sum(sizes.values()))

    @classmethod
    def fit(
        cls,
        train: Rows,
        log_numeric: Sequence[str],
        wide_buckets: dict[str, list[float]],
        crosses: Sequence[Sequence[str]],
        hash_buckets: int,
    ) -> AdultFeatures:
        vocabularies = {c: sorted(set(train.categorical[c])) for c in CATEGORICAL}  # '?' too
        x = log1p_columns(train.numeric, [NUMERIC.index(c) for c in log_numeric])
        mean = np.nan_to_num(np.nanmean(x, axis=0)) if len(x) else np.zeros(x.shape[1])
        std = np.nan_to_num(np.nanstd(x, axis=0))
        std = np.where(std > 0, std, 1.0)  # a constant column stays 0, not NaN
        # Missing indicators only for the numeric columns with a '?' in train (none in adult).
        indicators = [i for i in range(len(NUMERIC)) if np.isnan(x[:, i]).any()]
        return cls(
            vocabularies, log_numeric, mean, std, indicators, wide_buckets, crosses, hash_buckets
        )

    def to_state(self) -> dict:
        """Plain data (datamodules/fitted_state.py): what `from_state` rebuilds this from."""
        return {
            "vocabularies": {c: list(v) for c, v in self.vocabularies.items()},
            "log_numeric": self.log_numeric,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "indicator_columns": self.indicator_columns,
            "wide_buckets": self.wide_buckets,
            "crosses": self.crosses,
            "hash_buckets": self.hash_buckets,
        }

    @classmethod
    def from_state(cls, state: dict) -> AdultFeatures:
        return cls(**state)

    @property
    def cardinalities(self) -> list[int]:
        return [len(self.vocabularies[c]) + 1 for c in CATEGORICAL]

    @property
    def num_numeric(self) -> int:
        return len(NUMERIC) + len(self.indicator_columns)

    def categorical_ids(self, rows: Rows) -> np.ndarray:
        return np.stack(
            [
                np.asarray(
                    [self.vocabularies[c].get(v, OOV_ID) for v in rows.categorical[c]],
                    dtype=np.int64,
                ).reshape(len(rows))
                for c in CATEGORICAL
            ],
            axis=1,
        )

    def numeric_values(self, rows: Rows) -> np.ndarray:
        x = (log1p_columns(rows.numeric, self.log_columns) - self.mean) / self.std
        missing = np.isnan(x)
        x = np.where(missing, 0.0, x)  # the train mean
        indicators = missing[:, self.indicator_columns].astype(np.float64)
        return np.concatenate([x, indicators], axis=1).astype(np.float32)

    def wide_ids(self, rows: Rows, categorical: np.ndarray) -> np.ndarray:
        """[N, fields] ids into the wide index space, one active feature per field."""
        field_ids = {c: categorical[:, i] for i, c in enumerate(CATEGORICAL)}
        for column, boundaries in self.wide_buckets.items():
            raw = rows.numeric[:, NUMERIC.index(column)]
            ids = np.searchsorted(np.asarray(boundaries, dtype=np.float64), raw, side="right")
            field_ids[f"{column}_buckets"] = np.where(np.isnan(raw), len(boundaries) + 1, ids)
        # Crosses combine the train-vocabulary ids, so a value unseen in train crosses as OOV.
        for cross in self.crosses:
            field_ids[" x ".join(cross)] = hash_ids(
                [field_ids[c] for c in cross], self.hash_buckets
            )
        ids = np.stack([field_ids[f] for f in self.wide_fields], axis=1)
        return (ids + self.wide_offsets[None, :]).astype(np.int64)

    def unseen(self, rows: Rows) -> dict[str, Counter]:
        """Per categorical column, the values of `rows` outside its vocabulary (read as OOV)."""
        return {
            c: Counter(v for v in rows.categorical[c] if v not in self.vocabularies[c])
            for c in CATEGORICAL
        }

    def encode(self, rows: Rows) -> dict[str, torch.Tensor]:
        categorical = self.categorical_ids(rows)
        return {
            "categorical": torch.from_numpy(categorical),
            "numeric": torch.from_numpy(self.numeric_values(rows)),
            "wide": torch.from_numpy(self.wide_ids(rows, categorical)),
            "label": torch.from_numpy(rows.label),
        }


def log1p_columns(numeric: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    # Capital gains and losses are 0 for most people and up to 99,999 for a few: log1p
    # keeps the few from dominating the standardised scale.
    x = numeric.copy()
    x[:, columns] = np.log1p(np.maximum(x[:, columns], 0.0))
    return x


class TensorRows(Dataset):
    """Examples held as a dict of equally long tensors; a batch is one indexing."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def __getitems__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(rows)
        return {k: v[rows] for k, v in self.tensors.items()}


# --- the datamodule -------------------------------------------------------------------------
class AdultDataModule(FittedState, SplitLoaders, CorpusFolder, L.LightningDataModule):
    """UCI Adult as batches of {categorical, numeric, wide, label} (see the module docstring).

    The facts the model is built from (`categorical_cardinalities`, `num_numeric`,
    `wide_dim`) are read from the train split when first asked for (or from the checkpoint's
    restored state), and linked to the model by the CLI."""

    corpus = "adult"
    source_url = SOURCE_URL

    def __init__(
        self,
        data_dir: str | None = None,
        file_name: str = FILE_NAME,
        batch_size: int = 256,
        eval_batch_size: int = 4096,
        split_seed: int = 42,
        log_numeric: list[str] | None = None,
        wide_buckets: dict[str, list[float]] | None = None,
        crosses: list[list[str]] | None = None,
        hash_buckets: int = 1000,
        num_workers: int = 0,
        download: bool = True,
        test_file: str | None = None,
        predict_file: str | None = None,
    ):
        """
        Args:
            data_dir: the folder that holds `file_name`; default $DATA_DIR/adult, else ./data/adult.
            file_name: the rows (UCI's adult.data, or any file of the same 15 columns).
            split_seed: shuffles the rows before the 80/10/10 cut.
            log_numeric: numeric columns log1p-transformed before standardisation
                (default capital_gain, capital_loss).
            wide_buckets: numeric columns bucketized for the wide part, with their boundaries;
                the field is called `<column>_buckets` (default: age at 18, 25, ..., 65).
            crosses: cross products of the wide part, each a list of fields (categorical
                columns or `<column>_buckets`), hashed into `hash_buckets` features each.
            download: fetch adult.data from UCI when it is missing (needs a network).
            test_file: rows that `test` scores instead of the test split (UCI's adult.test as
                published reads as it is), read with the train split's vocabularies and
                statistics (a checkpoint's, with --ckpt_path); a path, or a name in data_dir.
            predict_file: rows that `predict` reads (default: the test rows); the income
                column may be left out.
        """
        super().__init__()
        require_positive(
            "data",
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            hash_buckets=hash_buckets,
        )
        require_non_negative("data", num_workers=num_workers)
        log_numeric = ["capital_gain", "capital_loss"] if log_numeric is None else log_numeric
        wide_buckets = {"age": AGE_BOUNDARIES} if wide_buckets is None else wide_buckets
        crosses = DEFAULT_CROSSES if crosses is None else crosses
        _check_columns(log_numeric, wide_buckets, crosses)
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir, self.corpus)
        self.file_name = file_name
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.split_seed = split_seed
        self.log_numeric = list(log_numeric)
        self.wide_buckets = dict(wide_buckets)
        self.crosses = [list(c) for c in crosses]
        self.hash_buckets = hash_buckets
        self.num_workers = num_workers
        self.download = download
        self.test_file, self.predict_file = test_file, predict_file
        self._splits: dict[str, Rows] | None = None
        self._features: AdultFeatures | None = None
        self._datasets: dict[str, TensorRows] = {}

    # --- CorpusFolder ---------------------------------------------------------------------
    def local_files(self) -> dict[str, Path] | None:
        return self.files_present({"rows": self.file_name})

    def expected_files(self) -> list[str]:
        return [self.file_name]

    def fetch(self) -> None:
        if self.file_name != FILE_NAME:
            raise DataError(self._missing_message(f"only UCI's {FILE_NAME} can be downloaded"))
        with urllib.request.urlopen(SOURCE_URL, timeout=30) as response:
            atomic_write_bytes(self.data_dir / FILE_NAME, response.read())

    # --- the rows, their split and the features fitted on train ---------------------------
    @property
    def splits(self) -> dict[Split, Rows]:
        if self._splits is None:
            path = self.files["rows"]
            rows = read_adult(path)
            if len(rows) < 10:
                raise DataError(
                    f"{path}: {len(rows)} rows are too few for an 80/10/10 split; give at least 10."
                )
            self._splits = {
                name: rows.take(index)
                for name, index in split_rows(len(rows), self.split_seed).items()
            }
        return self._splits

    @property
    def features(self) -> AdultFeatures:
        if self._features is None:
            self._features = AdultFeatures.fit(
                self.splits["train"],
                self.log_numeric,
                self.wide_buckets,
                self.crosses,
                self.hash_buckets,
            )
        return self._features

    @property
    def categorical_cardinalities(self) -> list[int]:
        """Vocabulary size of each categorical column (OOV included), in CATEGORICAL order."""
        return self.features.cardinalities

    @property
    def num_numeric(self) -> int:
        return self.features.num_numeric

    @property
    def wide_dim(self) -> int:
        return self.features.wide_dim

    # --- FittedState: the features travel in checkpoints -------------------------------
    def fitted_state(self) -> dict:
        return self.features.to_state()

    def restore_fitted(self, state: dict) -> None:
        self._features = AdultFeatures.from_state(state)

    def restored(self) -> None:
        self._datasets.clear()  # encoded with the features fitted here: encode them again

    # --- the datasets, built when a loader first asks (after a checkpoint's restore) -------
    def split_dataset(self, name: str) -> TensorRows:
        """The encoded rows of a split, of `test_file` for "test" and `predict_file` for
        "predict" when they are given."""
        if name not in self._datasets:
            self._datasets[name] = TensorRows(self.features.encode(self._rows(name)))
        return self._datasets[name]

    def _rows(self, name: str) -> Rows:
        key, labelled = {"test": ("test_file", True), "predict": ("predict_file", False)}.get(
            name, (None, True)
        )
        file = getattr(self, key) if key else None
        if name == "predict" and file is None:
            return self._rows("test")
        if file is None:
            return self.splits[name]
        path = resolve_eval_file(file, self.data_dir, key)
        rows = read_adult(path, labelled=labelled)
        for column, counts in self.features.unseen(rows).items():
            report_unseen(path, column, counts, len(rows), "rows")
        return rows

    train_set = property(lambda self: self.split_dataset("train"))
    val_set = property(lambda self: self.split_dataset("val"))
    test_set = property(lambda self: self.split_dataset("test"))

    def predict_dataloader(self):
        return self.loader(self.split_dataset("predict"), self.eval_batch_size)

    # --- Lightning hooks -------------------------------------------------------------------
    def prepare_data(self) -> None:
        if not evaluating_files(self, self.test_file, self.predict_file):
            self.files  # noqa: B018 - one process fetches the file first

    def setup(self, stage: str | None = None) -> None:
        # Nothing to build yet: Lightning restores a checkpoint's fitted state after setup,
        # so the datasets are encoded when the loaders ask for them (`split_dataset`).
        pass

    drop_last_train = False  # no BatchNorm here: every training row is read every epoch

    def collate_fn(self):
        return whole_batch


def _check_columns(
    log_numeric: Sequence[str],
    wide_buckets: dict[str, list[float]],
    crosses: Sequence[Sequence[str]],
) -> None:
    """Column names in the settings must exist: a typo would silently drop a feature."""
    for column in [*log_numeric, *wide_buckets]:
        if column not in NUMERIC:
            raise UserError(
                f"data: {column!r} is not a numeric column of Adult; those are {', '.join(NUMERIC)}."
            )
    fields = set(CATEGORICAL) | {f"{c}_buckets" for c in wide_buckets}
    for cross in crosses:
        unknown = [f for f in cross if f not in fields]
        if len(cross) < 2 or unknown:
            raise UserError(
                f"data.init_args.crosses: {list(cross)} must name at least two fields, each a categorical "
                f"column or a bucketized one; "
                + (f"{', '.join(map(repr, unknown))} is not one. " if unknown else "")
                + f"Fields: {', '.join(sorted(fields))}."
            )
