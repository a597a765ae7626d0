"""Atomic writes: a file or a folder appears whole, or the previous one stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtoken_align.atomic import atomic_folder, atomic_path, write_atomic


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "W.json"
    write_atomic(target, b"first")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["W.json"]  # the temporary file is gone


def test_a_folder_is_replaced_only_once_the_new_one_is_whole(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with atomic_folder(folder) as building:
        (building / "a.txt").write_text("a")
    with pytest.raises(RuntimeError), atomic_folder(folder) as building:
        (building / "b.txt").write_text("b")
        raise RuntimeError("killed mid-write")
    assert [p.name for p in folder.iterdir()] == ["a.txt"]
    with atomic_folder(folder) as building:
        (building / "c.txt").write_text("c")
    assert [p.name for p in folder.iterdir()] == ["c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert oct(folder.stat().st_mode & 0o777) == "0o755"
