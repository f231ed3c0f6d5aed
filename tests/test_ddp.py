"""DDP on the CPU: two processes train, and validating one checkpoint on two processes gives
the loss of one process (evaluation blocks are padded, never repeated, and summed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_GPT, config, evaluation_metrics, run_cli, run_cli_subprocess
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


def validate(args: list[str], ckpt_path: Path, *extra: str, run=run_cli) -> dict[str, float]:
    """What `validate` of the checkpoint logs (into the checkpoint's run, with a CSVLogger)."""
    run("validate", *args, "--trainer.logger=CSVLogger", *extra, f"--ckpt_path={ckpt_path}")
    return evaluation_metrics(ckpt_path, "validate")


def test_ddp_fit_and_validate_equal_one_process(tmp_path, shakespeare_dir):
    corpus = small_corpus(tmp_path / "corpus", shakespeare_dir)
    args = [
        *("--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT),
        f"--data.init_args.data_dir={corpus}",
        f"--data.init_args.block_size={BLOCK}",
        f"--data.init_args.eval_batch_size={EVAL_BATCH}",
        "--trainer.limit_val_batches=1.0",  # the whole validation text, every block once
    ]
    # DDP starts its workers by running the command line again: a real process.
    run_cli_subprocess(
        "fit", *args, *DDP, "--trainer.max_steps=4", "--trainer.val_check_interval=4"
    )
    (run,) = Path("seqmodels").iterdir()
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert (run / "config.yaml").is_file()

    one = validate(args, last, "--trainer.accelerator=cpu", "--trainer.devices=1")
    two = validate(args, last, *DDP, run=run_cli_subprocess)
    for name in ("val/loss", "val/ppl", "val/bpc", "val/word_ppl"):
        assert two[name] == pytest.approx(one[name], rel=1e-6), name
    # fit validated under DDP too, before it saved the checkpoint
    assert checkpoint_val_loss(last) == pytest.approx(one["val/loss"], rel=1e-6)
