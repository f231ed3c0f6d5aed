"""Errors that are the user's to fix; the CLI prints them as one message and exits non-zero."""


class UserError(Exception):
    """Something in the user's input (config, data, files) is wrong; the message says how to fix it."""


class DataError(UserError):
    """A corpus is missing, unreadable or malformed."""
