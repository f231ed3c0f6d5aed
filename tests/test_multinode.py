"""Two machines, played on this one: `torchrun --nnodes 2`, one process per "node", both on
the loopback address, launched by launch/torchrun_gpt.sh as on two real machines, train
together (gloo on the CPU) and validate to the loss that one process gives on the same
checkpoint, as the 2-process DDP test does (tests/test_ddp.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, config
from tests.test_cli import checkpoint_val_loss
from tests.test_ddp import small_gpt_args, validate

pytestmark = pytest.mark.slow

CONFIG = "gpt_shakespeare_char.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_node(node_rank: int, port: int, args: list[str]) -> subprocess.Popen:
    """One "machine": the README's launch file (launch/torchrun_gpt.sh) for node `node_rank`
    of 2, one process."""
    env = {
        **os.environ,
        **dict(NNODES="2", NODE_RANK=str(node_rank), GPUS="1", OMP_NUM_THREADS="1"),
        **dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CONFIG=config(CONFIG)),
        "TORCHRUN": f"{sys.executable} -m torch.distributed.run",
    }
    return subprocess.Popen(
        ["bash", str(ROOT / "launch" / "torchrun_gpt.sh"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_nodes_train_and_validate_as_one_process(tmp_path, shakespeare_dir):
    args = [
        *small_gpt_args(tmp_path, shakespeare_dir),
        "--trainer.callbacks=[]",  # no samples: seconds saved, nothing tested
        *("--trainer.logger=CSVLogger", "--trainer.logger.save_dir=runs"),
    ]
    # num_nodes and devices: the launch file sets them from NNODES and GPUS.
    two_nodes = [
        *("--trainer.accelerator=cpu", "--trainer.strategy=ddp"),
        *("--trainer.max_steps=4", "--trainer.val_check_interval=4"),
    ]
    port = free_port()
    nodes = [torchrun_node(rank, port, [*args, *two_nodes]) for rank in (0, 1)]
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for n in nodes:
                n.kill()
            raise
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-5000:]
    # The second machine's worker joined a world of two: global rank 1 of 2.
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1], outputs[1][-3000:]

    (last,) = Path("runs").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 4
    one = validate(["--config", config(CONFIG), *args], last)  # on one process
    # fit validated on the two nodes before it saved the checkpoint
    assert checkpoint_val_loss(last) == pytest.approx(one["val/loss"], rel=1e-6)
