"""Entry point: `python main.py SUBCOMMAND --config configs/<model>_<corpus>.yaml`, where
SUBCOMMAND is fit, validate, test, predict, generate, translate or lr_find."""

from suite.cli import main

if __name__ == "__main__":
    main()
