"""bench/gpu_check.sh on a machine without CUDA: it says so and exits 0 before starting the
checks (they train, and the GPU figures come only from a CUDA machine's run)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")


def test_the_script_says_there_is_no_cuda_and_exits_0():
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    shell = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True
    )
    assert shell.returncode == 0, shell.stderr
    assert "no CUDA GPU on this machine" in shell.stdout
