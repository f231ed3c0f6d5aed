"""The search file of `main.py search`: which CLI keys to tune over which spaces, the metric and
its direction, the sampler and the pruner. Read and checked whole before any trial starts.

    metric: val/loss              # a metric the model logs in validation
    direction: minimize           # minimize | maximize
    sampler: tpe                  # tpe | random | grid
    pruner: median                # median | successive_halving | none
    startup_trials: 5             # median: trials that run whole before any is pruned
    params:
      model.init_args.learning_rate: {type: log_uniform, low: 1.0e-3, high: 0.3}
      model.init_args.dropout: {type: uniform, low: 0.0, high: 0.5}
      model.init_args.n_hidden: {type: int, low: 64, high: 512, log: true}
      data.init_args.batch_size: {type: choice, values: [32, 64, 128]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from core.errors import UserError

SpaceType = Literal["log_uniform", "uniform", "int", "choice"]
Sampler = Literal["tpe", "random", "grid"]
Pruner = Literal["median", "successive_halving", "none"]
Direction = Literal["minimize", "maximize"]

TOP_KEYS = {"metric", "direction", "sampler", "pruner", "startup_trials", "params", "seed"}
SPACE_KEYS: dict[str, set[str]] = {
    "log_uniform": {"type", "low", "high"},
    "uniform": {"type", "low", "high", "step"},
    "int": {"type", "low", "high", "step", "log"},
    "choice": {"type", "values"},
}


@dataclass(frozen=True)
class Space:
    key: str  # the CLI key it sets, as the config spells it: model.init_args.learning_rate
    type: SpaceType
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    values: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value for this key (optuna names the parameter after the key)."""
        if self.type == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        log = self.type == "log_uniform"
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=log)

    def example(self) -> Any:
        """A value inside the space, to check that the CLI accepts the key before any trial."""
        if self.type == "choice":
            return self.values[0]
        return int(self.low) if self.type == "int" else self.low

    def grid(self) -> list:
        """Every value, for the grid sampler (choices and integer ranges: read_search_file refuses
        the others)."""
        if self.type == "choice":
            return list(self.values)
        return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))


@dataclass(frozen=True)
class SearchSpec:
    path: Path
    metric: str
    direction: Direction = "minimize"
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    seed: int | None = None  # the sampler's seed: the same trials again from a new study
    startup_trials: int = 5  # the median pruner's: trials that run whole, to give it a median
    params: tuple[Space, ...] = field(default_factory=tuple)


def read_search_file(path: str | Path) -> SearchSpec:
    """The search file at `path`, checked: an unknown key, a space that is empty or of the
    wrong shape, a missing metric: one message naming the key and the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--search {path}: no such file (a YAML search file; see README, Search).")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"--search {path}: not valid YAML: {err}") from None
    where = f"search file {path}"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected keys metric, params, ...; got {type(raw).__name__}.")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise UserError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})."
        )
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise UserError(
            f"{where}: `metric` is missing: name a metric logged in validation, e.g. val/loss."
        )
    choices = {
        "direction": (Direction, "minimize"),
        "sampler": (Sampler, "tpe"),
        "pruner": (Pruner, "median"),
    }
    chosen = {}
    for key, (options, default) in choices.items():
        value = raw.get(key, default)
        if value not in get_args(options):
            raise UserError(
                f"{where}: {key}: {value!r} is not one of {', '.join(get_args(options))}."
            )
        chosen[key] = value
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise UserError(f"{where}: `params` is empty: name at least one CLI key and its space.")
    spaces = tuple(read_space(key, value, where) for key, value in params.items())
    seed = raw.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise UserError(f"{where}: seed must be an integer, got {seed!r}.")
    startup = raw.get("startup_trials", 5)
    if not isinstance(startup, int) or startup < 0:
        raise UserError(f"{where}: startup_trials must be an integer >= 0, got {startup!r}.")
    spec = SearchSpec(path, metric, params=spaces, seed=seed, startup_trials=startup, **chosen)
    if spec.sampler == "grid":
        for space in spaces:
            if space.type not in ("choice", "int"):
                raise UserError(
                    f"{where}: params.{space.key}: sampler grid needs a finite space; a "
                    f"{space.type} range has no grid: give `type: choice` with the values to try."
                )
    return spec


def read_space(key: str, raw: Any, where: str) -> Space:
    here = f"{where}: params.{key}"
    if not isinstance(raw, dict) or "type" not in raw:
        raise UserError(
            f"{here}: expected {{type: ..., ...}} with type one of {', '.join(SPACE_KEYS)}."
        )
    kind = raw["type"]
    if kind not in SPACE_KEYS:
        raise UserError(f"{here}: type {kind!r} is not one of {', '.join(SPACE_KEYS)}.")
    unknown = sorted(set(raw) - SPACE_KEYS[kind])
    if unknown:
        raise UserError(
            f"{here}: {unknown[0]!r} is not a setting of a {kind} space "
            f"(its settings: {', '.join(sorted(SPACE_KEYS[kind]))})."
        )
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise UserError(f"{here}: the choice is empty: give `values: [a, b, ...]`.")
        return Space(key, kind, values=tuple(values))
    low, high, step = raw.get("low"), raw.get("high"), raw.get("step")
    for name, value in (("low", low), ("high", high)):
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise UserError(f"{here}: {name} must be a number, got {value!r}.")
    if not low < high:
        raise UserError(f"{here}: the space is empty: low ({low}) must be below high ({high}).")
    if kind == "log_uniform" and low <= 0:
        raise UserError(f"{here}: a log_uniform space needs low > 0, got {low}.")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise UserError(f"{here}: an int space needs integer low and high, got {low}, {high}.")
    if step is not None and not (isinstance(step, (int, float)) and 0 < step <= high - low):
        raise UserError(f"{here}: step must be above 0 and at most high - low, got {step!r}.")
    log = bool(raw.get("log", False))
    if kind == "int" and log and low <= 0:
        raise UserError(f"{here}: an int space with log: true needs low >= 1, got {low}.")
    return Space(key, kind, low=low, high=high, step=step, log=log)
