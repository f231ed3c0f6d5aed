"""The shipped configs (configs/*.yaml), installed as package data: the `seqmodels` command
finds them by name from any folder (cli/shipped_configs.py)."""
