"""Each user's persistent notebook workspace: the root directory of every notebook
session the user starts, kept across sessions.

Single-user mode: ``PLINTH_HOME/workspaces/<user>`` (0700, the server's user, like
everything else in that mode). Isolated mode (a root server, one OS user per group):
``<isolation.run_root>/.workspaces/<user>`` (a dot name: never taken for a workload's
working directory by retention's scan of the run root), 0700 and owned by the OS user the session's
group runs as, in a 0711 parent -- so another group's session (another OS user)
cannot list or read it, and PLINTH_HOME stays the server's alone.

The notice file (:data:`NOTICE_FILE`) is how the platform speaks to the user inside
JupyterLab without a kernel: it appears in the file browser of the workspace.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from plinth.services import workdirs

__all__ = ["NOTICE_FILE", "ensure_workspace", "workspace_dir", "write_notice"]

NOTICE_FILE = "PLINTH-NOTICE.txt"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _root(home: Path) -> tuple[Path, workdirs.Isolation | None]:
    iso = workdirs._ISOLATION.get(Path(home).absolute())
    if iso is None:
        return Path(home) / "workspaces", None
    return iso.run_root / ".workspaces", iso


def workspace_dir(home: Path, user: str) -> Path:
    """Where `user`'s notebook files live (see the module docstring)."""
    return _root(home)[0] / _SAFE.sub("_", user)


def ensure_workspace(home: Path, user: str, workload_id: str) -> Path:
    """Create `user`'s workspace when missing and give it to the OS user that runs
    `workload_id` (isolated mode); mode 0700 either way. Returns its path."""
    root, iso = _root(home)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711 if iso is not None else 0o700)
    path = root / _SAFE.sub("_", user)
    path.mkdir(mode=0o700, exist_ok=True)
    if iso is not None:
        uid, gid = iso.owner_of(workload_id)
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            # A user moved to another group: its files follow it.
            for dirpath, dirnames, filenames in os.walk(path):
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), uid, gid)
            os.lchown(path, uid, gid)
    os.chmod(path, 0o700)
    return path


def write_notice(workspace: Path, text: str) -> None:
    """Write the platform's latest message to the user into the workspace (best effort:
    a missing workspace is no error). Written by the server, so never followed through
    a link a session planted: the file is replaced, not opened for writing."""
    if not workspace.is_dir():
        return
    tmp = workspace / f".{NOTICE_FILE}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o644)  # fmt: skip
        with os.fdopen(fd, "w") as f:
            f.write(text.rstrip() + "\n")
        st = workspace.stat()
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, workspace / NOTICE_FILE)
    except OSError:
        tmp.unlink(missing_ok=True)
