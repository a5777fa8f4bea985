"""Atomic writes: a file or folder appears whole or not at all, with the user's umask."""

import os
import stat

import pytest

from ptlib.atomic import atomic_file, atomic_folder


def test_a_file_appears_whole_with_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "out.txt") as staging:
            staging.write_text("done")
            assert not (tmp_path / "out.txt").exists()  # nothing at the target yet
    finally:
        os.umask(previous)
    assert (tmp_path / "out.txt").read_text() == "done"
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_an_error_leaves_the_old_file_and_no_staging(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as staging:
        staging.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    with atomic_folder(tmp_path / "model") as staging:
        (staging / "config.json").write_text("{}")
    assert (tmp_path / "model" / "config.json").read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "other") as staging:
        (staging / "config.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_writer_that_replaces_the_staging_file_still_gets_the_umask(tmp_path):
    """safetensors' save_file writes its own file over the staging path, with mode 0600."""
    previous = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "out.bin") as staging:
            own = tmp_path / "writers-own.tmp"
            own.write_bytes(b"data")
            own.chmod(0o600)
            os.replace(own, staging)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o640
