"""Preference pairs for DPO: a prompt, the response preferred (`chosen`) and the other one
(`rejected`).

Sources, in this order: `train_file` (JSONL, one `{"prompt", "chosen", "rejected"}` object a
line; `val_file` likewise, else `val_fraction` of the train rows, seeded), or `dataset`, a
Hugging Face dataset in that format (e.g. `trl-lib/hh-rlhf-helpful-base`'s text form) read
from the hub when online. A row of Anthropic's `hh-rlhf` layout (`chosen` and `rejected`
whole dialogues, no `prompt`) is split at its last "\\n\\nAssistant:" into prompt and
responses. A bad row (not an object, a missing or non-text field, an empty prompt or
response, a prompt that leaves no room in the context) stops the run with its file and line.

Each pair becomes two sequences, prompt + chosen and prompt + rejected, with next-token
targets on the response only (IGNORE_INDEX on the prompt and the padding), cut to
`block_size` tokens (the response's start is kept). A batch holds both sides padded to one
length, so the model runs chosen and rejected in one forward pass:

    chosen_input_ids, chosen_targets, rejected_input_ids, rejected_targets   [B, T]

The tokenizer must be the policy's: `byte` (the chat corpus's bytes and markers), `file`
(a suite tokenizer's JSON, e.g. the `tokenizer.json` a language-model corpus cached; plain
or with the cache's checksum header) or `pretrained` (a Hugging Face model's folder).
There is no test split: `test` reads the validation pairs again.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch

from core.checked_files import read_payload
from core.checks import require_fraction, require_non_negative, require_positive
from core.constants import IGNORE_INDEX, Split
from core.errors import DataError, UserError
from core.hub import hub_offline
from datamodules.loaders import SplitLoaders
from datamodules.pretrained_tokenizer import PretrainedTokenizer, load_pretrained_tokenizer
from datamodules.text_files import read_lines
from datamodules.tokenizers import ByteTokenizer, Tokenizer, TokenizerKind

PreferenceTokenizer = Literal["byte", "file", "pretrained"]
FIELDS = ("prompt", "chosen", "rejected")
HH_ASSISTANT = "\n\nAssistant:"  # Anthropic hh-rlhf: the turn the responses start with


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    where: str  # "file:line" or "dataset: row n", for messages


@dataclass(frozen=True)
class EncodedPair:
    chosen: tuple[list[int], list[int]]  # input ids, next-token targets
    rejected: tuple[list[int], list[int]]


def split_hh_rlhf(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Anthropic hh-rlhf's whole dialogues as (prompt, chosen, rejected): the prompt ends
    with the last assistant marker the two dialogues share."""
    end = 0
    while True:
        found = chosen.find(HH_ASSISTANT, end)
        if (
            found < 0
            or chosen[: found + len(HH_ASSISTANT)] != rejected[: found + len(HH_ASSISTANT)]
        ):
            break
        end = found + len(HH_ASSISTANT)
    return chosen[:end], chosen[end:], rejected[end:]


def parse_row(row, where: str) -> PreferencePair:
    """One row as a pair; a DataError naming `where` when it is not one."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with {', '.join(FIELDS)}, got {row!r:.60}.")
    hh_dialogue = isinstance(row.get("chosen"), str) and isinstance(row.get("rejected"), str)
    if "prompt" not in row and hh_dialogue and HH_ASSISTANT in row["chosen"]:
        row = dict(zip(FIELDS, split_hh_rlhf(row["chosen"], row["rejected"]), strict=True))
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise DataError(
            f"{where}: missing field {', '.join(missing)}; each row needs "
            f'{{"prompt": ..., "chosen": ..., "rejected": ...}}.'
        )
    for field in FIELDS:
        if not isinstance(row[field], str):
            raise DataError(f"{where}: `{field}` must be text, got {type(row[field]).__name__}.")
        if not row[field].strip():
            raise DataError(f"{where}: `{field}` is empty.")
    return PreferencePair(row["prompt"], row["chosen"], row["rejected"], where)


def read_jsonl(path: Path) -> list[PreferencePair]:
    """Pairs of a JSONL file, one object a line (blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"preference data: {path} is not a file; give a JSONL file of pairs.")
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg}).") from None
        pairs.append(parse_row(row, where))
    if not pairs:
        raise DataError(f"{path}: no preference pairs in the file.")
    return pairs


def read_hub_pairs(name: str) -> list[PreferencePair]:
    """The rows of a Hugging Face preference dataset's train split (downloaded)."""
    if hub_offline():
        raise DataError(
            f"preference data: data.init_args.dataset {name} is read from the Hugging Face hub, and "
            "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set. Offline, write its pairs as JSONL, "
            'one {"prompt": ..., "chosen": ..., "rejected": ...} a line, and give data.init_args.train_file.'
        )
    import datasets

    try:
        rows = datasets.load_dataset(name, split="train")
    except Exception as err:  # no network, no such dataset, no train split
        raise DataError(
            f"preference data: data.init_args.dataset {name} cannot be read ({type(err).__name__}: {err})."
        ) from None
    return [parse_row(dict(row), f"{name}: row {n}") for n, row in enumerate(rows, start=1)]


def encode_side(prompt_ids: list[int], response_ids: list[int], block_size: int):
    """Input ids and targets of prompt + response, cut to block_size + 1 tokens; target j
    (predicting token j + 1) counts when that token is the response's."""
    ids = (prompt_ids + response_ids)[: block_size + 1]
    targets = [t if j + 1 >= len(prompt_ids) else IGNORE_INDEX for j, t in enumerate(ids[1:])]
    return ids[:-1], targets


def collate_pairs(pairs: list[EncodedPair], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Both sides of every pair padded to the longest sequence of the batch."""
    length = max(len(ids) for p in pairs for ids, _ in (p.chosen, p.rejected))
    batch = {}
    for side in ("chosen", "rejected"):
        ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
        targets = torch.full((len(pairs), length), IGNORE_INDEX, dtype=torch.long)
        for row, pair in enumerate(pairs):
            row_ids, row_targets = getattr(pair, side)
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            targets[row, : len(row_targets)] = torch.tensor(row_targets)
        batch[f"{side}_input_ids"], batch[f"{side}_targets"] = ids, targets
    return batch


class PreferenceDataModule(SplitLoaders, L.LightningDataModule):
    drop_last_train = False  # a few hundred pairs: every one counts

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        dataset: str | None = None,
        tokenizer: PreferenceTokenizer = "byte",
        tokenizer_file: str | None = None,
        tokenizer_kind: TokenizerKind = "bpe",
        pretrained_tokenizer: str | None = None,
        block_size: int = 128,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 1,
        num_workers: int = 0,
    ):
        """
        Args:
            train_file: JSONL of {"prompt", "chosen", "rejected"} rows.
            val_file: JSONL of validation pairs; without it `val_fraction` of the train
                pairs (seeded by `split_seed`) validate.
            dataset: a Hugging Face dataset id in the same format, when no train_file
                (needs a network).
            tokenizer: `byte`, `file` (with `tokenizer_file` and its `tokenizer_kind`) or
                `pretrained` (with `pretrained_tokenizer`, a model's folder): the policy's.
            block_size: longest sequence, prompt and response; linked to the model.
        """
        super().__init__()
        require_positive("data", block_size=block_size, batch_size=batch_size)
        require_non_negative("data", num_workers=num_workers)
        require_fraction("data", val_fraction=val_fraction)
        if not (train_file or dataset):
            raise UserError(
                "preference data: set data.init_args.train_file (a JSONL of prompt/chosen/rejected "
                "rows) or data.init_args.dataset (a Hugging Face dataset id, online)."
            )
        if tokenizer == "file" and not tokenizer_file:
            raise UserError(
                "data.init_args.tokenizer=file needs data.init_args.tokenizer_file (a tokenizer JSON)."
            )
        if tokenizer == "pretrained" and not pretrained_tokenizer:
            raise UserError(
                "data.init_args.tokenizer=pretrained needs data.init_args.pretrained_tokenizer (a folder)."
            )
        self.save_hyperparameters()
        self.train_file = Path(train_file).expanduser() if train_file else None
        self.val_file = Path(val_file).expanduser() if val_file else None
        self.dataset = dataset
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.num_workers = num_workers
        self._tokenizer = None
        self._pairs: dict[Split, list[PreferencePair]] | None = None

    # --- the tokenizer: the policy's -------------------------------------------------------
    @property
    def tokenizer(self) -> ByteTokenizer | Tokenizer | PretrainedTokenizer:
        if self._tokenizer is None:
            hp = self.hparams
            if hp.tokenizer == "byte":
                from datamodules.chat import CHAT_SPECIALS  # the chat corpus's ids exactly

                self._tokenizer = ByteTokenizer(CHAT_SPECIALS)
            elif hp.tokenizer == "pretrained":
                self._tokenizer = load_pretrained_tokenizer(hp.pretrained_tokenizer)
            else:
                path = Path(hp.tokenizer_file).expanduser()
                if not path.is_file():
                    raise UserError(f"data.init_args.tokenizer_file {path}: no such file.")
                self._tokenizer = Tokenizer.from_bytes(read_payload(path), hp.tokenizer_kind)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def tokenizer_name(self) -> str:
        return getattr(self.tokenizer, "name", self.hparams.tokenizer_kind)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    # --- the pairs ---------------------------------------------------------------------------
    @property
    def pairs(self) -> dict[Split, list[PreferencePair]]:
        if self._pairs is None:
            train = read_jsonl(self.train_file) if self.train_file else read_hub_pairs(self.dataset)
            if self.val_file:
                val = read_jsonl(self.val_file)
            else:
                order = list(range(len(train)))
                random.Random(self.split_seed).shuffle(order)
                n_val = max(1, round(self.val_fraction * len(train)))
                if n_val >= len(train):
                    raise DataError(
                        f"preference data: {len(train)} pair(s) cannot be split into train and "
                        "validation; give more pairs or a data.init_args.val_file."
                    )
                val = [train[i] for i in sorted(order[:n_val])]
                train = [train[i] for i in sorted(order[n_val:])]
            self._pairs = {"train": train, "val": val, "test": val}
        return self._pairs

    def encode_pair(self, pair: PreferencePair) -> EncodedPair:
        """Both sides of a pair; a prompt that leaves no response token in the context is a
        DataError naming the row."""
        tok = self.tokenizer
        prompt_ids = (
            tok.encode_prompt(pair.prompt)
            if hasattr(tok, "encode_prompt")
            else tok.encode(pair.prompt)
        )
        if len(prompt_ids) >= self.block_size:
            raise DataError(
                f"{pair.where}: the prompt is {len(prompt_ids)} tokens, the context "
                f"(data.init_args.block_size) {self.block_size}: no room for a response. Shorten the "
                "prompt or raise data.init_args.block_size (at most the model's context)."
            )
        return EncodedPair(
            encode_side(prompt_ids, tok.encode(pair.chosen), self.block_size),
            encode_side(prompt_ids, tok.encode(pair.rejected), self.block_size),
        )

    # --- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.pairs  # noqa: B018 - reads (or downloads) the pairs once, first

    def setup(self, stage: str | None = None) -> None:
        encoded = {
            split: [self.encode_pair(p) for p in pairs] for split, pairs in self.pairs.items()
        }
        self.train_set, self.val_set, self.test_set = (encoded[s] for s in ("train", "val", "test"))

    def collate_fn(self):
        return collate_pairs

    def state_dict(self) -> dict:
        # Saved with each checkpoint: which tokenizer's ids the weights learned.
        return {"tokenizer": self.tokenizer_name}
