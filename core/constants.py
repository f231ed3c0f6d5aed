"""Facts every package shares, said once."""

from __future__ import annotations

from typing import Literal

# Targets with this id are not scored (padding, prompts): torch's cross_entropy default.
IGNORE_INDEX = -100

# The splits of every corpus, by the names Lightning's stages and the metrics use
# (`val/loss`); a corpus whose files say `valid` maps its file names onto these.
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
