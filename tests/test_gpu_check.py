"""bench/gpu_check.sh on a machine without CUDA: it says so and exits 0, having trained nothing
and written nothing (the GPU figures come only from a CUDA machine's run)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")


def test_the_script_says_there_is_no_cuda_and_exits_0(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    shell = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True
    )
    assert shell.returncode == 0, shell.stderr
    assert "no CUDA GPU on this machine" in shell.stdout

    out = tmp_path / "gpu_check.json"
    direct = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert direct.returncode == 0, direct.stderr
    assert "no CUDA GPU on this machine" in direct.stdout
    assert not out.exists()
