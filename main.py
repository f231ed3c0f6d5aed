"""Entry point: `python main.py SUBCOMMAND --config configs/<model>_<corpus>.yaml`, where
SUBCOMMAND is fit, validate, test, predict, generate, translate, lr_find, export_vectors,
merge_lora or chat."""

from cli import main

if __name__ == "__main__":
    main()
