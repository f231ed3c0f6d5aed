"""How every checkpoint of a run is written and read, Lightning's own included.

Lightning's TorchCheckpointIO writes through an fsspec transaction whose temporary file is in
TMPDIR; when TMPDIR is another file system (a tmpfs, common on clusters) the final move is a
copy, and a kill during it leaves a truncated checkpoint in place of the good one. Here a
checkpoint is written beside its target and renamed onto it (core.files.atomic_path), weights
that are NaN or inf are never written, and a checkpoint is read once, safely
(cli.checkpoints.read_checkpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from typing_extensions import override

from callbacks.non_finite import CAUSES, NonFiniteError
from cli.checkpoints import non_finite_weights, read_checkpoint
from core.errors import UserError
from core.files import atomic_path, remove_stale_temporaries


class SafeCheckpointIO(TorchCheckpointIO):
    def __init__(self):
        self.cleaned: set[Path] = set()  # folders whose stale temporaries are gone

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if bad := non_finite_weights(checkpoint.get("state_dict", {})):
            raise NonFiniteError(
                f"the weights are NaN or inf ({bad}) at step {checkpoint.get('global_step')}; "
                f"{path} is not written and keeps its last finite state: {CAUSES}."
            )
        if not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        clean_once(path.parent, self.cleaned)
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            torch.save(checkpoint, f)

    @override
    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not is_local(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        checkpoint = read_checkpoint(path)
        if "pytorch-lightning_version" not in checkpoint:  # weights alone: no step, no optimizer
            raise UserError(
                f"--ckpt_path {path}: not a checkpoint of `fit` (it holds weights only); use a "
                "checkpoint a run wrote, or load these weights in Python."
            )
        return checkpoint


def is_local(path: _PATH) -> bool:
    return get_filesystem(path).protocol in ("file", ("file", "local"))


def clean_once(folder: Path, cleaned: set[Path]) -> None:
    """Remove the temporaries a killed save left in `folder` and, for a run's `checkpoints/`
    folder, in those of the other runs beside it (a run killed during its first save has no
    checkpoint anyone resumes from), once per folder and run."""
    folder = folder.resolve()
    if folder in cleaned:
        return
    cleaned.add(folder)
    folders = [folder]
    if folder.name == "checkpoints":  # <save_dir>/<project>/<run>/checkpoints
        folders += sorted(p for p in folder.parent.parent.glob("*/checkpoints") if p != folder)
    removed = [path for f in folders for path in remove_stale_temporaries(f)]
    if removed:
        where = ", ".join(sorted({str(p.parent) for p in removed}))
        print(
            f"removed {len(removed)} temporary file(s) of an interrupted save in {where}",
            file=sys.stderr,
        )
