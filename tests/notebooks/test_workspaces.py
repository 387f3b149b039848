"""Workspaces: per user, 0700, owned by the OS user of the session's group when the
server isolates groups (so another group's session cannot read them); the notice
file is replaced, never written through a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plinth.services.workdirs import Isolation, isolate_workdirs
from plinth.services.workspaces import NOTICE_FILE, ensure_workspace, workspace_dir, write_notice


def test_single_user_mode_keeps_workspaces_under_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    isolate_workdirs(home, None)
    ws = ensure_workspace(home, "ann", "nb-1")
    assert ws == workspace_dir(home, "ann") == home / "workspaces" / "ann"
    assert stat.S_IMODE(ws.stat().st_mode) == 0o700
    assert workspace_dir(home, "../evil") == home / "workspaces" / ".._evil"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_isolated_workspaces_belong_to_the_groups_os_user(tmp_path: Path) -> None:
    home, run_root = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    run_root.mkdir()
    owners = {"nb-a": (54321, 54321), "nb-b": (54322, 54322)}
    isolate_workdirs(home, Isolation(run_root, lambda wid: owners[wid]))
    try:
        a = ensure_workspace(home, "ann", "nb-a")
        b = ensure_workspace(home, "bob", "nb-b")
        assert a.parent == run_root / ".workspaces"
        assert stat.S_IMODE(a.parent.stat().st_mode) == 0o711  # enter, not list
        for ws, (uid, gid) in ((a, owners["nb-a"]), (b, owners["nb-b"])):
            st = ws.stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o700)
        (a / "kept.ipynb").write_text("{}")
        # ann moves to bob's group: her files follow her to that group's OS user.
        ensure_workspace(home, "ann", "nb-b")
        assert (a / "kept.ipynb").stat().st_uid == owners["nb-b"][0]
    finally:
        isolate_workdirs(home, None)


def test_the_notice_replaces_a_planted_link(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched")
    (ws / NOTICE_FILE).symlink_to(target)
    write_notice(ws, "idle for 48m: stops at 11:00")
    assert target.read_text() == "untouched"
    assert not (ws / NOTICE_FILE).is_symlink()
    assert "stops at 11:00" in (ws / NOTICE_FILE).read_text()
    write_notice(tmp_path / "missing", "no error")  # best effort
