"""DDP on the CPU: two processes train, and their validation gives the metrics of one
process validating the same weights (evaluation blocks are padded, never repeated, and
summed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import (
    TINY_GPT,
    config,
    evaluation_metrics,
    logged_metrics,
    run_cli,
    run_cli_subprocess,
)
from tests.test_cli import checkpoint_val_loss

pytestmark = pytest.mark.slow

BLOCK, EVAL_BATCH = 32, 16
DDP = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.devices=2"]


def small_corpus(folder: Path, shakespeare_dir: Path) -> Path:
    """The start of Tiny Shakespeare, cut so that the validation text is an odd number of
    blocks: two processes then need one padding block, and a repeated block would show."""
    text = (shakespeare_dir / "input.txt").read_text()
    for size in range(20_000, 21_000):
        valid_chars = size - int(size * 0.9)  # nanoGPT's split: the last 10% validates
        blocks = math.ceil((valid_chars - 1) / BLOCK)
        if blocks % 2 == 1 and math.ceil(blocks / 2) % EVAL_BATCH:  # and a short last batch
            break
    else:
        raise AssertionError("no size in range gives an odd number of validation blocks")
    folder.mkdir()
    (folder / "input.txt").write_text(text[:size])
    return folder


def small_gpt_args(tmp_path: Path, shakespeare_dir: Path) -> list[str]:
    """A tiny GPT on `small_corpus` (made under tmp_path), validated on every block once."""
    corpus = small_corpus(tmp_path / "corpus", shakespeare_dir)
    return [
        *TINY_GPT,
        f"--data.init_args.data_dir={corpus}",
        f"--data.init_args.block_size={BLOCK}",
        f"--data.init_args.eval_batch_size={EVAL_BATCH}",
        "--trainer.limit_val_batches=1.0",  # the whole validation text, every block once
    ]


def validate(args: list[str], ckpt_path: Path) -> dict[str, float]:
    """What `validate` of the checkpoint logs on one process (into the checkpoint's run)."""
    run_cli(
        "validate",
        *args,
        "--trainer.logger=CSVLogger",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        f"--ckpt_path={ckpt_path}",
    )
    return evaluation_metrics(ckpt_path, "validate")


def test_ddp_fit_validates_as_one_process(tmp_path, shakespeare_dir):
    args = [
        *("--config", config("gpt_shakespeare_char.yaml")),
        *small_gpt_args(tmp_path, shakespeare_dir),
    ]
    # DDP starts its workers by running the command line again: a real process. It validates
    # on both processes at step 4, then saves the checkpoint of those weights.
    run_cli_subprocess(
        "fit",
        *args,
        *DDP,
        *("--trainer.logger=CSVLogger", "--trainer.logger.save_dir=."),
        "--trainer.max_steps=4",
        "--trainer.val_check_interval=4",
    )
    (last,) = Path().rglob("last.ckpt")
    run = last.parents[1]
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert (run / "config.yaml").is_file()
    two = logged_metrics(run)

    one = validate(args, last)
    for name in ("val/loss", "val/ppl", "val/bpc", "val/word_ppl"):
        assert two[name] == pytest.approx(one[name], rel=1e-6), name
    assert checkpoint_val_loss(last) == pytest.approx(one["val/loss"], rel=1e-6)
