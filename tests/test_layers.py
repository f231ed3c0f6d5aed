"""The house's rule, checked by reading the imports: layers point one way.

core/                      the ground: imports nothing else of the project
datamodules/  lit_models/  stand on core, never on each other
callbacks/                 above them
cli/                       the roof: nothing imports it
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "datamodules", "lit_models", "callbacks", "cli")
MAY_IMPORT = {
    "core": set(),
    "datamodules": {"core"},
    "lit_models": {"core"},
    "callbacks": {"core", "datamodules", "lit_models"},
    "cli": {"core", "datamodules", "lit_models", "callbacks"},
}


def project_imports(path: Path) -> set[str]:
    """The project packages a module imports, at any depth (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_layers_point_one_way(package):
    wrong = {
        f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if (bad := project_imports(path) - MAY_IMPORT[package] - {package})
    }
    assert not wrong, "\n".join(sorted(wrong))


def test_bench_uses_the_installed_package():
    """bench/ imports the installed project; no script edits sys.path to find it."""
    edits = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "bench").glob("*.py"))
        if "sys.path" in path.read_text(encoding="utf-8")
    ]
    assert not edits, f"bench scripts that edit sys.path: {edits}"
