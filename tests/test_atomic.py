"""Atomic writes leave the old target on failure, no temporaries, and normal permissions."""

from __future__ import annotations

import os

import pytest

from recroute.atomic import atomic_dir, atomic_file


def test_atomic_file_replaces_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    old_mask = os.umask(0o022)
    try:
        with atomic_file(target) as tmp:
            tmp.write_text("new")
    finally:
        os.umask(old_mask)
    assert target.read_text() == "new"
    assert (target.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_file_failure_keeps_the_old_content(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "bundle"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
