"""Errors that are the user's to fix; the CLI prints them as one message and exits non-zero."""


class UserError(Exception):
    """Something in the user's input (config, data, files) is wrong; the message says how to fix it."""


class DataError(UserError):
    """A corpus is missing, unreadable or malformed."""


class SettingError(UserError, ValueError):
    """A setting outside its range (a ValueError too, for code that builds a model in Python)."""


def require_positive(section: str, **values: int) -> None:
    """Stop at the first of `values` below 1, naming its key (`data.init_args.batch_size`, ...)."""
    for name, value in values.items():
        if not value >= 1:  # `not >=`: NaN fails too
            raise SettingError(f"{section}.{name} must be a positive integer, got {value}.")
