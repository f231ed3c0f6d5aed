"""Glue for the command line: the CLI, the trainer defaults and user-facing errors."""
