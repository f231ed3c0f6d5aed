"""The configs shipped with the suite, addressable by name from any folder.

`pip install` installs configs/*.yaml as package data, so the `seqmodels` command finds them
wherever it runs: `--config gpt_shakespeare_char_cpu` (or `gpt_shakespeare_char_cpu.yaml`, or
the README's `configs/gpt_shakespeare_char_cpu.yaml` run outside the repository) names the
shipped file. A path that exists is always read as given; a name that is neither an existing
file nor a shipped config stops with the list of names.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError

# Beside the packages in a checkout and in site-packages alike (configs/ is a package too).
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHARED = "defaults.yaml"  # read first by every run, not a config of its own


def shipped_names(folder: Path = CONFIGS) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if p.name != SHARED)


def resolve_config(value: str, folder: Path = CONFIGS) -> str:
    """The file `--config value` reads: `value` itself when it exists or is not a config's
    name, else the shipped config of that name."""
    path = Path(value)
    if path.exists():
        return value
    name = shipped_name(path)
    if name is None:
        return value  # a path of the user's own: jsonargparse says it does not exist
    if (folder / f"{name}.yaml").is_file() and name != Path(SHARED).stem:
        return str(folder / f"{name}.yaml")
    raise UserError(
        f"--config {value}: no such file, and no shipped config is named {name!r}. "
        f"The shipped configs: {', '.join(shipped_names(folder))} "
        "(`python -m cli.list_configs` shows their models and corpora); or give a YAML file's path."
    )


def shipped_name(path: Path) -> str | None:
    """The name in `NAME`, `NAME.yaml` or `configs/NAME.yaml`; None for any other path."""
    parent = path.parent.as_posix()
    if parent not in (".", "configs") or path.suffix not in ("", ".yaml"):
        return None
    if parent == "configs" and path.suffix != ".yaml":
        return None
    return path.stem


def resolve_config_args(args: list[str], folder: Path = CONFIGS) -> list[str]:
    """The command line with each `--config NAME` (or `--config=NAME`) made the shipped path."""
    resolved = list(args)
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            resolved[i + 1] = resolve_config(args[i + 1], folder)
        elif arg.startswith("--config="):
            resolved[i] = "--config=" + resolve_config(arg.split("=", 1)[1], folder)
    return resolved
