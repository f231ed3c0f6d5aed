"""The roof: the command line (LightningCLI, the Trainer, the subcommands). Nothing below
imports it."""

from cli.app import main

__all__ = ["main"]
