"""The staged-directory rename shared by extract_archive and checkout."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plinth.artifacts._staging import staged_directory


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_dest_appears_complete_only_when_the_block_ends(tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "code"
    with staged_directory(dest) as work:
        (work / "a.txt").write_text("a")
        assert not dest.exists()  # nothing visible at dest while it is being written
        assert work.parent == dest.parent and work.name.endswith(".partial")
    assert (dest / "a.txt").read_text() == "a"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o755
    assert _siblings(dest.parent) == ["code"]


def test_an_error_in_the_block_leaves_nothing_behind(tmp_path: Path) -> None:
    dest = tmp_path / "code"
    with pytest.raises(RuntimeError), staged_directory(dest) as work:
        (work / "half").write_text("x")
        raise RuntimeError("boom")
    assert _siblings(tmp_path) == []


def test_an_empty_dest_is_replaced_and_a_full_one_refused(tmp_path: Path) -> None:
    dest = tmp_path / "code"
    dest.mkdir()
    with staged_directory(dest) as work:
        (work / "a").write_text("1")
    assert (dest / "a").read_text() == "1"
    with pytest.raises(FileExistsError, match="not an empty directory"), staged_directory(dest):
        pytest.fail("must not be entered")  # pragma: no cover
    assert _siblings(tmp_path) == ["code"]


def test_a_concurrent_attempt_that_finished_first_wins(tmp_path: Path) -> None:
    dest = tmp_path / "code"
    with pytest.raises(OSError), staged_directory(dest) as work:
        (work / "mine").write_text("late")
        # Another attempt renames its complete tree into place meanwhile.
        with staged_directory(dest) as other:
            (other / "theirs").write_text("first")
    assert _siblings(dest) == ["theirs"]  # the first one stays, whole
    assert _siblings(tmp_path) == ["code"]  # the late one's staging is gone
