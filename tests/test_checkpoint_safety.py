"""Checkpoints are written whole whatever TMPDIR is, never with NaN weights, and read once and
safely: a checkpoint is data (weights_only=True), never code, for every command that takes
one, and the model class it names must be one of the suite's."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from callbacks.non_finite import NonFiniteError
from cli.checkpoint_io import SafeCheckpointIO
from core.files import HOST, remove_stale_temporaries
from tests.conftest import (
    SHARED_DATA,
    TINY_GPT,
    config,
    need_corpus,
    run_cli,
    run_cli_subprocess,
)

CSV = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=runs"]
GPT_ARGS = ["--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT, *CSV]


class CreatesFile:
    """Unpickled unsafely, it creates `marker`: the payload of a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture(scope="module")
def gpt_ckpt(tmp_path_factory) -> Path:
    """The last.ckpt of a tiny GPT fit on tinyshakespeare (4 steps)."""
    need_corpus("tinyshakespeare")
    folder = tmp_path_factory.mktemp("gpt")
    env = {"DATA_DIR": str(SHARED_DATA), "XDG_CACHE_HOME": str(folder / "cache")}
    run_cli(
        *("fit", *GPT_ARGS, "--trainer.max_steps=4", "--trainer.val_check_interval=2"),
        cwd=folder,
        env=env,
    )
    return folder / "runs" / "gpt_shakespeare_char" / "version_0" / "checkpoints" / "last.ckpt"


def malicious_copy(good: Path, path: Path, marker: Path) -> Path:
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["payload"] = CreatesFile(marker)
    torch.save(checkpoint, path)
    return path


def expect_refused(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (message,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    for fragment in fragments:
        assert fragment in message, message


# Every command that takes --ckpt_path, with a config it accepts.
COMMANDS = [
    ("fit", "gpt_shakespeare_char.yaml"),
    ("validate", "gpt_shakespeare_char.yaml"),
    ("test", "gpt_shakespeare_char.yaml"),
    ("predict", "gpt_shakespeare_char.yaml"),
    ("generate", "gpt_shakespeare_char.yaml"),
    ("translate", "seq2seq_multi30k.yaml"),
    ("chat", "gpt_lora_chat.yaml"),
    ("merge_lora", "gpt_lora_chat.yaml"),
    ("export_vectors", "word2vec_skipgram_wikitext2.yaml"),
]


@pytest.mark.parametrize(("command", "config_name"), COMMANDS)
def test_a_malicious_checkpoint_runs_no_code(tmp_path, gpt_ckpt, command, config_name):
    marker = tmp_path / "pwned"
    evil = malicious_copy(gpt_ckpt, tmp_path / "evil.ckpt", marker)
    proc = run_cli(
        command, "--config", config(config_name), *CSV, "--ckpt_path", str(evil), check=False
    )
    expect_refused(proc, "evil.ckpt", "not a readable checkpoint", "weights_only")
    assert not marker.exists()


def test_a_malicious_lora_base_runs_no_code(tmp_path, gpt_ckpt):
    marker = tmp_path / "pwned"
    evil = malicious_copy(gpt_ckpt, tmp_path / "evil.ckpt", marker)
    proc = run_cli(
        *("fit", "--config", config("gpt_lora_chat.yaml"), *CSV),
        f"--model.init_args.base={evil}",
        check=False,
    )
    expect_refused(proc, "model.init_args.base", "evil.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["test", "generate"])
def test_a_checkpoint_swapped_after_it_was_read_is_not_read_again(
    tmp_path, gpt_ckpt, monkeypatch, command
):
    # The CLI reads --ckpt_path for the model's hyperparameters; the command then loads the
    # weights from that same copy. Swapping the file in between changes nothing.
    import cli.app

    ckpt = tmp_path / "last.ckpt"
    shutil.copy(gpt_ckpt, ckpt)
    marker = tmp_path / "pwned"
    evil = malicious_copy(gpt_ckpt, tmp_path / "evil.ckpt", marker)
    remember = cli.app.remember

    def remember_then_swap(path, checkpoint):
        remember(path, checkpoint)
        shutil.copy(evil, ckpt)

    monkeypatch.setattr(cli.app, "remember", remember_then_swap)
    extra = ["--prompt", "To be", "--max_new_tokens", "4"] if command == "generate" else []
    run_cli(command, *GPT_ARGS, "--ckpt_path", str(ckpt), *extra)
    assert not marker.exists()
    assert ckpt.read_bytes() == evil.read_bytes()  # it was swapped, and never read


def test_a_checkpoint_naming_a_foreign_class_does_not_import_it(tmp_path, gpt_ckpt, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "foreign_model.py").write_text(f"open({str(marker)!r}, 'w').close()\nModel = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = torch.load(gpt_ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "foreign_model.Model"
    torch.save(checkpoint, tmp_path / "foreign.ckpt")
    proc = run_cli("test", *GPT_ARGS, "--ckpt_path", str(tmp_path / "foreign.ckpt"), check=False)
    expect_refused(proc, "foreign_model.Model", "not one of the suite's models")
    assert not marker.exists()


def test_a_checkpoint_of_another_model_names_both(gpt_ckpt):
    proc = run_cli(
        *("test", "--config", config("lstm_shakespeare_char.yaml"), *CSV),
        *("--ckpt_path", str(gpt_ckpt)),
        check=False,
    )
    expect_refused(proc, "holds a lit_models.GPT", "RNNLanguageModel", "config.yaml")


def test_a_checkpoint_of_other_data_names_both_vocabularies(tmp_path, gpt_ckpt):
    small = tmp_path / "small"
    small.mkdir()
    (small / "input.txt").write_text("to be or not to be\n" * 400)
    proc = run_cli(
        *("test", *GPT_ARGS, "--ckpt_path", str(gpt_ckpt)),
        f"--data.init_args.data_dir={small}",
        check=False,
    )
    trained = torch.load(gpt_ckpt, weights_only=True)["hyper_parameters"]["vocab_size"]
    expect_refused(proc, f"vocab_size={trained}", "vocab_size=9", "gpt_shakespeare_char.yaml")


@pytest.mark.parametrize("command", ["fit", "test", "generate"])
def test_a_checkpoint_with_nan_weights_is_refused_by_every_command(tmp_path, gpt_ckpt, command):
    checkpoint = torch.load(gpt_ckpt, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name][0] = float("nan")
    torch.save(checkpoint, tmp_path / "diverged.ckpt")
    extra = ["--prompt", "To be"] if command == "generate" else []
    proc = run_cli(
        command, *GPT_ARGS, "--ckpt_path", str(tmp_path / "diverged.ckpt"), *extra, check=False
    )
    expect_refused(proc, "diverged.ckpt", "NaN or inf weights", name)


def test_an_empty_checkpoint_says_its_save_was_interrupted(tmp_path):
    (tmp_path / "last.ckpt").touch()
    proc = run_cli("test", *GPT_ARGS, "--ckpt_path", str(tmp_path / "last.ckpt"), check=False)
    expect_refused(proc, "last.ckpt", "empty (0 bytes)")


def test_nan_weights_are_never_written(tmp_path):
    path = tmp_path / "last.ckpt"
    good = {"state_dict": {"w": torch.ones(3)}, "global_step": 4, "pytorch-lightning_version": "2"}
    io = SafeCheckpointIO()
    io.save_checkpoint(good, path)
    with pytest.raises(NonFiniteError, match="NaN or inf .*w.* not written"):
        io.save_checkpoint({"state_dict": {"w": torch.tensor([1.0, float("inf")])}}, path)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def other_file_system_tmpdir(tmp_path: Path) -> Path:
    """A TMPDIR on another file system than the checkpoints (a tmpfs, where there is one)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = shm / f"seqmodels-test-{os.getpid()}"
    else:
        folder = tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    return folder


def test_a_save_killed_midway_loses_nothing_whatever_tmpdir(tmp_path, shakespeare_dir):
    tmpdir = other_file_system_tmpdir(tmp_path)
    try:
        args = [*GPT_ARGS, "--trainer.max_steps=8", "--trainer.val_check_interval=2"]
        proc = run_cli_subprocess(
            "fit",
            *args,
            "--trainer.callbacks+=tests.interruptions.KillDuringSave",
            "--trainer.callbacks.init_args.at_step=4",
            cwd=tmp_path,
            env={"TMPDIR": str(tmpdir)},
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        assert not [p for p in tmpdir.rglob("*") if p.is_file()]  # nothing went through TMPDIR
        folder = tmp_path / "runs" / "gpt_shakespeare_char" / "version_0" / "checkpoints"
        (orphan,) = folder.glob(".*.tmp")  # the half-written file, beside its target
        assert f".{HOST}-" in orphan.name
        # The checkpoints of step 2 are whole, and the run resumes from last.ckpt.
        saved = sorted(p.name for p in folder.glob("*.ckpt"))
        assert saved == ["best-epoch0-step2-val_loss" + saved[0].split("val_loss")[1], "last.ckpt"]
        assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2
        resumed = run_cli("fit", *args, "--ckpt_path", str(folder / "last.ckpt"), cwd=tmp_path)
        assert "removed 1 temporary file(s) of an interrupted save" in resumed.stderr
        assert not orphan.exists()
        last = (
            tmp_path / "runs" / "gpt_shakespeare_char" / "version_1" / "checkpoints" / "last.ckpt"
        )
        assert torch.load(last, weights_only=True)["global_step"] == 8
    finally:
        if tmpdir.parent == Path("/dev/shm"):
            shutil.rmtree(tmpdir, ignore_errors=True)


def test_only_the_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    names = {
        "dead": f".last.ckpt.{HOST}-{dead_pid}.abc123.tmp",
        "alive": f".last.ckpt.{HOST}-{os.getpid()}.abc123.tmp",
        "other_host": f".last.ckpt.otherhost-{dead_pid}.abc123.tmp",
        "not_ours": "notes.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for k, n in names.items() if k != "dead"
    )
