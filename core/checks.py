"""The checks every constructor makes of the settings it reads, each naming the key
(`model.init_args.n_head`, `data.init_args.batch_size`) and what its value must be, so that a bad setting stops
the run before any data is read or any step is trained, as one message (exit status 2):

    require_positive("model", n_layer=n_layer, n_embd=n_embd)    integers >= 1
    require_positive_or_none("data", eval_batch_size=...)        None, or an integer >= 1
    require_non_negative("model", learning_rate=lr)              finite, >= 0
    require_positive_number("model", eps=eps)                    finite, > 0
    require_probability("model", dropout=dropout)                in [0, 1)
    require_fraction("data", val_fraction=val_fraction)          in (0, 1)
    require_in_range("model", 0, 1, "[]", ratio=ratio)           any interval
    require_divisor("model", "n_head", n_head, "n_embd", n_embd)
    require_betas("model", betas)                                two numbers in [0, 1)

Every check fails on NaN. The error is a SettingError: a UserError for the CLI, a ValueError
for code that builds a model in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from core.errors import SettingError, require_positive, setting_key

__all__ = [
    "SettingError",
    "require_betas",
    "require_divisor",
    "require_fraction",
    "require_in_range",
    "require_non_negative",
    "require_positive",
    "require_positive_number",
    "require_positive_or_none",
    "require_probability",
]

Bounds = Literal["[]", "[)", "(]", "()"]  # which ends of the interval belong to it


def require_in_range(
    section: str, low: float, high: float, bounds: Bounds = "[]", **values: float
) -> None:
    """Stop at the first of `values` outside the interval from `low` to `high`; `bounds` says
    which ends are in it, as in "[0, 1)". An infinite end is never reached (values are finite)."""
    for name, value in values.items():
        above = low < value if bounds[0] == "(" else low <= value
        below = value < high if bounds[1] == ")" else value <= high
        if not (above and below and math.isfinite(value)):
            if math.isinf(high):
                what = f"a finite number {'>' if bounds[0] == '(' else '>='} {low}"
            else:
                what = f"in {bounds[0]}{low}, {high}{bounds[1]}"
            raise SettingError(f"{setting_key(section, name)} must be {what}, got {value}.")


def require_non_negative(section: str, **values: float) -> None:
    """Learning rates, weight decay, worker counts, ...: finite and >= 0."""
    require_in_range(section, 0, math.inf, "[)", **values)


def require_positive_number(section: str, **values: float) -> None:
    """Finite and > 0 (Adam's eps, a scale)."""
    require_in_range(section, 0, math.inf, "()", **values)


def require_probability(section: str, **values: float) -> None:
    """Dropout, label smoothing: in [0, 1) (1 would drop or smooth away everything)."""
    require_in_range(section, 0, 1, "[)", **values)


def require_fraction(section: str, **values: float) -> None:
    """A share of something that must leave both parts non-empty: in (0, 1)."""
    require_in_range(section, 0, 1, "()", **values)


def require_held_out_fractions(val_fraction: float, test_fraction: float, unit: str) -> None:
    """The shares held out for validation and test: each in (0, 1), and together leaving
    `unit` (rows, sentences, text) to train on."""
    require_fraction("data", val_fraction=val_fraction, test_fraction=test_fraction)
    if val_fraction + test_fraction >= 1:
        raise SettingError(
            "data.init_args.val_fraction + data.init_args.test_fraction must leave "
            f"{unit} to train on, got {val_fraction} + {test_fraction}."
        )


def require_positive_or_none(section: str, **values: int | None) -> None:
    """Optional sizes: None (a default applies) or an integer >= 1."""
    require_positive(section, **{k: v for k, v in values.items() if v is not None})


def require_divisor(section: str, name: str, value: int, of: str, of_value: int) -> None:
    """`value` >= 1 dividing `of_value` (attention heads splitting the model width)."""
    if not (value >= 1 and of_value % value == 0):
        raise SettingError(
            f"{setting_key(section, name)} must be a positive divisor of "
            f"{setting_key(section, of)}={of_value}, "
            f"got {value}."
        )


def require_betas(section: str, betas: Sequence[float], name: str = "betas") -> None:
    """Adam's (beta1, beta2): two numbers in [0, 1)."""
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        key = setting_key(section, name)
        raise SettingError(f"{key} must be two numbers in [0, 1), got {list(betas)}.")
