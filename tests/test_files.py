"""core.files: an output is replaced whole or left as it was, never half-written."""

import pytest

from core.files import (
    HOST,
    atomic_folder,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temporaries,
)


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "out.txt"  # the folder is made
    atomic_write_text(target, "first\n")
    atomic_write_bytes(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]
    assert target.stat().st_mode & 0o777 == 0o644  # readable by others, as a plain open() makes


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "model.ckpt"
    target.write_text("the good checkpoint")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a checkp")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "the good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]


def test_atomic_folder_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and not (tmp / "old.txt").exists()
        (tmp / "config.json").write_text("{}")
        assert (target / "old.txt").exists()  # the old folder stays whole until the end
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # nothing left beside it
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-export")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_dead_writer_s_temporary_folder_is_removed(tmp_path):
    dead = tmp_path / f".model.{HOST}-999999999.abc.tmp"  # no such process
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert not dead.exists()
