"""Facts every package shares, said once."""

from __future__ import annotations

from typing import Literal

# Targets with this id are not scored (padding, prompts): torch's cross_entropy default.
IGNORE_INDEX = -100

# The splits of every corpus, by the names Lightning's stages and the metrics use
# (`val/loss`); a corpus whose files say `valid` maps its file names onto these.
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

# The files of a Hugging Face tokenizer (what transformers' AutoTokenizer reads): hashed into
# its identity by the datamodules, copied beside an exported model.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
