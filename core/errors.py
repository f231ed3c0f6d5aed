"""Errors that are the user's to fix; the CLI prints them as one message and exits non-zero."""


class UserError(Exception):
    """Something in the user's input (config, data, files) is wrong; the message says how to fix it."""


class DataError(UserError):
    """A corpus is missing, unreadable or malformed."""


class SettingError(UserError, ValueError):
    """A setting outside its range (a ValueError too, for code that builds a model in Python)."""


def setting_key(section: str, name: str) -> str:
    """The key as a config or the command line spells it: `model` and `data` settings are a
    class's arguments (`--data.init_args.batch_size`), the others plain (`trainer.max_steps`)."""
    return f"{section}.init_args.{name}" if section in ("model", "data") else f"{section}.{name}"


def require_positive(section: str, **values: int) -> None:
    """Stop at the first of `values` below 1, naming its key (`data.init_args.batch_size`, ...)."""
    for name, value in values.items():
        if not value >= 1:  # `not >=`: NaN fails too
            key = setting_key(section, name)
            raise SettingError(f"{key} must be a positive integer, got {value}.")
