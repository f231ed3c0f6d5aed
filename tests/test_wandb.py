"""Weights & Biases: what an offline run written by `fit` holds (read back from its .wandb
file), and how the suite chooses between online, offline and disabled."""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from wandb.proto import wandb_internal_pb2 as pb

from cli.wandb_mode import choose_wandb_mode, has_wandb_credentials
from tests.conftest import TINY_GPT, config, run_cli

SHAKESPEARE = config("gpt_shakespeare_char.yaml")


# --- reading an offline run ------------------------------------------------------------------
# wandb (0.31) writes an offline run only as `run-<id>.wandb`: no wandb-summary.json, no
# config.yaml. That file is a LevelDB-style log: a 7-byte header (":W&B", magic, version),
# then 32 KiB blocks of chunks, each with a header (CRC-32 of type and data, length, type:
# 1 full, 2 first, 3 middle, 4 last) and a piece of a serialized `Record` protobuf. wandb
# no longer ships a Python reader for it (`wandb.sdk.internal.datastore` is gone).

BLOCK, HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # too short for a chunk header: zero padding up to the next block
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: bad chunk at byte {pos}"
        pos += HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(path: Path) -> dict:
    """History rows, the final summary and the config of an offline run."""
    run = {"history": [], "summary": {}, "config": {}}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run["history"].append(
                {item_key(i): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            run["summary"].update(
                {item_key(i): json.loads(i.value_json) for i in record.summary.update}
            )
        elif kind == "config":
            run["config"].update(
                {item_key(i): json.loads(i.value_json) for i in record.config.update}
            )
    return run


def test_fit_writes_an_offline_run_with_val_metrics_and_the_resolved_config(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_cli("fit", "--config", SHAKESPEARE, *TINY_GPT)

    (offline,) = Path("wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    run_id = log.stem.removeprefix("run-")
    run_dir = Path("seqmodels", run_id)  # checkpoints and config go under the W&B run id
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    run = read_run(log)
    evals = [row for row in run["history"] if "val/loss" in row]
    assert len(evals) == 2  # max_steps=20, val_check_interval=10
    for row in evals:
        assert math.isfinite(row["val/loss"])
        assert row["val/ppl"] == pytest.approx(math.exp(row["val/loss"]), rel=1e-5)
    assert run["summary"]["val/loss"] == evals[-1]["val/loss"]
    assert run["summary"]["val/ppl"] == evals[-1]["val/ppl"]
    assert any("train/loss" in row for row in run["history"])

    # The config logged is the one saved beside the checkpoints, key for key.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key, value in saved.items():
        assert run["config"][key] == value, key
    assert run["config"]["model"]["init_args"]["n_layer"] == 1
    assert run["config"]["data"]["init_args"]["block_size"] == 32
    assert run["config"]["vocab_size"] > 0  # the model's hyperparameters, linked ones included


def test_wandb_disabled_still_saves_checkpoints_and_config(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    quick = ["--trainer.max_steps=2", "--trainer.val_check_interval=2"]
    run_cli("fit", "--config", SHAKESPEARE, *TINY_GPT, *quick)
    assert not list(Path("wandb").glob("*run-*"))
    (run_dir,) = Path("seqmodels").iterdir()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()


# --- choosing the mode ----------------------------------------------------------------------


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No WANDB_MODE, no API key, no ~/.netrc: the state of a fresh machine."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def netrc_file(folder: Path, host: str) -> Path:
    path = folder / "netrc"
    path.write_text(f"machine {host}\n  login user\n  password {'x' * 40}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("mode", ["disabled", "online", "offline"])
def test_wandb_mode_set_by_the_user_wins(no_credentials, monkeypatch, mode):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # credentials would otherwise mean online
    monkeypatch.setenv("WANDB_MODE", mode)
    assert choose_wandb_mode() == mode


def test_no_credentials_means_offline(no_credentials):
    assert not has_wandb_credentials()
    assert choose_wandb_mode() == "offline"
    assert os.environ["WANDB_MODE"] == "offline"  # wandb.init, later, reads it from here


def test_api_key_means_online(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert choose_wandb_mode() == "online"


def test_netrc_entry_for_wandb_means_online(no_credentials, monkeypatch):
    monkeypatch.setenv("NETRC", str(netrc_file(no_credentials, "api.wandb.ai")))
    assert choose_wandb_mode() == "online"


def test_netrc_in_home_is_read_by_default(no_credentials):
    home = no_credentials / "home"
    home.mkdir()
    netrc_file(home, "api.wandb.ai").rename(home / ".netrc")
    assert choose_wandb_mode() == "online"


def test_netrc_entry_for_another_host_means_offline(no_credentials, monkeypatch):
    monkeypatch.setenv("NETRC", str(netrc_file(no_credentials, "github.com")))
    assert choose_wandb_mode() == "offline"


def test_netrc_entry_for_a_private_wandb_server(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    monkeypatch.setenv("NETRC", str(netrc_file(no_credentials, "wandb.example.org")))
    assert choose_wandb_mode() == "online"


@pytest.mark.parametrize(
    "text",
    [
        "machine api.wandb.ai\n  bogus x\n",  # not netrc: a parse error
        "machine api.wandb.ai login user password\n",  # an entry without a key
    ],
)
def test_unusable_netrc_means_offline(no_credentials, monkeypatch, text):
    path = no_credentials / "netrc"
    path.write_text(text)
    monkeypatch.setenv("NETRC", str(path))
    assert choose_wandb_mode() == "offline"
