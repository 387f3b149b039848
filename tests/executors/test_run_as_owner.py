"""Isolated replicas run as their working directory's owner, never as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _executor_helpers import DEADLINE_S

from plinth.executors.local import LocalExecutor

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")


def _owned_workdir(tmp_path: Path, uid: int) -> Path:
    base = Path("/tmp") / f"plinth-runas-{os.getpid()}-{tmp_path.name}"
    base.mkdir(mode=0o711)
    os.chmod(base, 0o711)
    work = base / "w"
    work.mkdir()
    os.chown(work, uid, uid)
    os.chmod(work, 0o700)
    return work


def test_the_command_runs_as_the_workdir_owner_with_its_own_home(make_spec, tmp_path) -> None:
    work = _owned_workdir(tmp_path, NOBODY)
    try:
        ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}], run_as_owner=True)
        spec = make_spec(["/bin/sh", "-c", "id -u; id -G; echo home=$HOME; touch made"],
                         workdir=work)  # fmt: skip
        handle = ex.launch(spec)
        assert ex.wait(handle, DEADLINE_S) == 0
        out = Path(handle["log_path"]).read_text().split()
        assert out[0] == str(NOBODY)
        assert str(0) not in out[1:-1], "no supplementary groups of the server"
        assert f"home={work}" in out
        assert (work / "made").stat().st_uid == NOBODY
        # The log and status files stay the server's: the command cannot reach them.
        assert Path(handle["log_path"]).stat().st_uid == 0
        assert not Path(handle["log_path"]).stat().st_mode & 0o077
    finally:
        import shutil

        shutil.rmtree(work.parent, ignore_errors=True)


def test_a_root_owned_workdir_is_refused(make_spec) -> None:
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}], run_as_owner=True)
    with pytest.raises(ValueError, match="never as root"):
        ex.launch(make_spec(["/bin/true"]))


def test_a_missing_program_as_another_user_is_127(make_spec, tmp_path) -> None:
    work = _owned_workdir(tmp_path, NOBODY)
    try:
        ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}], run_as_owner=True)
        handle = ex.launch(make_spec(["/nonexistent/program"], workdir=work))
        assert ex.wait(handle, DEADLINE_S) == 127
        assert ex.exit_reason(handle) == "exec-failed"
    finally:
        import shutil

        shutil.rmtree(work.parent, ignore_errors=True)
