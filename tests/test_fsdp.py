"""FSDP (cli/fsdp.py): the Transformer block is the wrapping unit and checkpoints are full
state dicts. Here (no CUDA): the strategy is built as documented, and the FSDP config parses,
builds it, and stops with one message. On a CUDA machine: a run trains
sharded and its checkpoint loads into a plain GPT on the CPU with the same validation loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from cli.fsdp import BLOCKS, TransformerFSDP
from cli.trainer import resolve_strategy
from core.errors import UserError
from lit_models.modules import TransformerBlock, TransformerDecoderBlock
from tests.conftest import TINY_GPT, assert_one_clear_error, config, run_cli, run_cli_subprocess
from tests.test_cli import checkpoint_val_loss
from tests.test_ddp import validate

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP needs CUDA GPUs")


def test_the_strategy_wraps_each_transformer_block_and_saves_full_state_dicts():
    strategy = TransformerFSDP(activation_checkpointing=True, sharding_strategy="HYBRID_SHARD")
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy)
    assert {TransformerBlock, TransformerDecoderBlock} == BLOCKS
    assert set(policy._module_classes) == BLOCKS
    assert set(strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes) == (
        BLOCKS
    )
    assert strategy._state_dict_type == "full"
    assert strategy.sharding_strategy.name == "HYBRID_SHARD"
    assert strategy.kwargs["use_orig_params"]
    assert not TransformerFSDP()._activation_checkpointing_kwargs  # off by default


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message of a machine without CUDA"
)
def test_the_fsdp_config_builds_its_strategy_and_without_cuda_stops_with_one_message(
    wikitext_dir,
):
    with pytest.raises(UserError, match="fsdp .TransformerFSDP. shards the model over CUDA GPUs"):
        resolve_strategy("fsdp", "cpu")
    proc = run_cli(
        "fit",
        *("--config", config("gpt_wikitext2_fsdp.yaml"), *TINY_GPT),
        f"--data.init_args.data_dir={wikitext_dir}",
        check=False,
    )
    assert proc.returncode == 2
    # The config parsed and built its strategy: the message names the class it built.
    assert_one_clear_error(proc, "trainer.strategy fsdp (TransformerFSDP)", "CUDA")


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("activation_checkpointing", [False, True])
def test_fsdp_trains_and_its_checkpoint_loads_without_fsdp(
    tmp_path, shakespeare_dir, activation_checkpointing
):
    devices = min(2, torch.cuda.device_count())
    args = [
        *("--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT),
        "--trainer.precision=32-true",  # compared with an fp32 CPU evaluation below
        "--trainer.callbacks=[]",  # no TextSamples: under FSDP it is off anyway
    ]
    strategy = [
        "--trainer.accelerator=gpu",
        f"--trainer.devices={devices}",
        "--trainer.strategy=cli.fsdp.TransformerFSDP",
        f"--trainer.strategy.activation_checkpointing={activation_checkpointing}",
    ]
    run_cli_subprocess(
        "fit", *args, *strategy, "--trainer.max_steps=4", "--trainer.val_check_interval=4"
    )
    (run,) = Path("seqmodels").iterdir()
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    # A full state dict: the plain model's names, no FSDP or checkpoint-wrapper prefixes.
    assert not [k for k in state["state_dict"] if "_fsdp" in k or "_checkpoint_wrapped" in k]
    on_cpu = validate(args, last, "--trainer.accelerator=cpu", "--trainer.devices=1")
    assert on_cpu["val/loss"] == pytest.approx(checkpoint_val_loss(last), rel=1e-4)
