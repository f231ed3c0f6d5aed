"""Every config with its model and corpus: `python -m cli.list_configs`.

Reads configs/*.yaml (not configs/defaults.yaml, which every run shares) and prints one row
per config, so a newcomer sees at a glance which model trains on which corpus."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def short_class(section: dict | None) -> str:
    class_path = (section or {}).get("class_path", "?")
    return class_path.rsplit(".", 1)[-1]


def config_rows(folder: Path = CONFIGS) -> list[tuple[str, str, str]]:
    """(config, model class, datamodule class) for each config in `folder`."""
    rows = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "defaults.yaml":
            continue
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows.append((path.name, short_class(config.get("model")), short_class(config.get("data"))))
    return rows


def main() -> None:
    rows = [("config", "model", "corpus (datamodule)"), *config_rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
