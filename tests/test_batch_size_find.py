"""The `batch_size_find` subcommand: Lightning's batch-size scaling, driven as a user drives it."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from cli.commands.batch_size_find import check_batches_follow, with_batch_size
from core.errors import UserError
from tests.conftest import TINY_GPT, assert_one_clear_error, config, run_cli

CPU_CONFIG = config("gpt_shakespeare_char_cpu.yaml")
# Three sizes (2, 4, 8) of one step each: seconds on a CPU, where nothing runs out of memory.
QUICK_SEARCH = ["--max_trials", "3", "--steps_per_trial", "1", "--trainer.logger=false"]


def test_batch_size_find_prints_the_cap_and_writes_the_config(tmp_path, shakespeare_dir):
    written = tmp_path / "configs" / "found.yaml"
    proc = run_cli(
        "batch_size_find",
        "--config",
        CPU_CONFIG,
        *TINY_GPT,
        *QUICK_SEARCH,
        "--write_config",
        str(written),
    )
    assert "largest batch size that fit: 8" in proc.stdout
    assert "the cap of --max_trials 3" in proc.stdout  # on a CPU nothing fails
    original = Path(CPU_CONFIG).read_text(encoding="utf-8")
    assert written.read_text() == original.replace("batch_size: 12", "batch_size: 8")
    assert not list(tmp_path.glob(".scale_batch_size_*"))  # the Tuner's own checkpoint is gone


def test_batch_size_find_without_a_batch_size_is_one_clear_error(shakespeare_dir):
    proc = run_cli(
        "batch_size_find",
        "--config",
        CPU_CONFIG,
        "--data=tests.test_batch_size_find.FixedBatches",
        *QUICK_SEARCH,
        check=False,
    )
    assert proc.returncode == 2
    assert_one_clear_error(proc, "FixedBatches (data.class_path) has no batch_size argument")


class FixedBatches(L.LightningDataModule):
    """A datamodule without a batch size (its facts are the GPT's links)."""

    vocab_size, block_size = 16, 8


def test_a_batch_size_found_replaces_the_value_and_keeps_the_comments():
    text = "# header\ndata:\n  init_args:\n    batch_size: 12   # per step\n    block_size: 64\n"
    assert with_batch_size(text, 96) == text.replace("12", "96")


@pytest.mark.parametrize(
    "text", ["model: {}\n", "data:\n  class_path: X\n", "data:\n  init_args:\n    n: 1\n"]
)
def test_a_config_without_a_batch_size_gets_one(text):
    edited = yaml.safe_load(with_batch_size(text, 64))
    assert edited["data"]["init_args"]["batch_size"] == 64
    assert {k: v for k, v in edited.items() if k != "data"} == {
        k: v for k, v in yaml.safe_load(text).items() if k != "data"
    }


def test_batches_cut_at_setup_are_refused():
    """Contiguous streams keep the batch they were built with, whatever batch_size says."""

    class Streams(L.LightningDataModule):
        batch_size = 64

        def train_dataloader(self):
            return [{"input_ids": torch.zeros(20, 35, dtype=torch.long)}]

    with pytest.raises(UserError, match="ran batches of 20"):
        check_batches_follow(Streams(), 64)
    check_batches_follow(Streams(), 20)
