"""core.files: an output is replaced whole or left as it was, never half-written."""

import pytest

from core.files import atomic_path, atomic_write_bytes, atomic_write_text


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
