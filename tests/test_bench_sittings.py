"""bench/translation_quality.py --resume: the fit time of a run trained in sittings."""

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch):
    """bench/translation_quality.py as a module; bench/ is on sys.path for this test only
    (the bench scripts import their `common` module)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(
        "translation_quality", BENCH / "translation_quality.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stopped_run(tmp_path, open_since: float, ckpt_time: float) -> tuple[Path, Path]:
    folder = tmp_path / "seq2seq_multi30k-20261123-211207"
    ckpt = folder / "seqmodels" / "abc123" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    os.utime(ckpt, (ckpt_time, ckpt_time))
    (folder / "fit_sittings.json").write_text(
        json.dumps({"seconds": [100.0], "open_since": open_since})
    )
    return folder, ckpt


def test_a_stopped_sitting_counts_up_to_its_last_checkpoint(tmp_path, bench):
    now = time.time()
    folder, ckpt = stopped_run(tmp_path, open_since=now - 500, ckpt_time=now - 200)
    name, fit_args, last = bench.resume_point(folder)
    assert (name, last) == ("seq2seq_multi30k", ckpt)
    assert "--trainer.logger.init_args.id=abc123" in fit_args  # same run, same best score
    sittings = bench.begin_sitting(folder, last)
    assert sittings["seconds"] == [100.0, 300.0]
    assert bench.end_sitting(folder, sittings, 50.0) == 450.0
    assert json.loads((folder / "fit_sittings.json").read_text())["open_since"] is None


def test_a_sitting_stopped_before_its_first_checkpoint_counts_zero(tmp_path, bench):
    now = time.time()
    # The last checkpoint is from an earlier sitting: the stopped one saved nothing.
    folder, ckpt = stopped_run(tmp_path, open_since=now - 100, ckpt_time=now - 5000)
    sittings = bench.begin_sitting(folder, ckpt)
    assert sittings["seconds"] == [100.0, 0.0]
