"""Who replicas run as: one unprivileged OS user per quota group, or the server's user.

When the server runs as root (``isolation.mode: auto`` or ``users``), every replica of
a group runs as that group's system user ``<prefix><group id>-<group name>`` (no
login shell, no home, created on demand with ``useradd``), in a working directory
only that user can enter (see :mod:`plinth.services.workdirs`). PLINTH_HOME is 0700
and the server's, so a replica reaches neither the store, nor the tokens, nor other
workloads' logs and code; a process of another uid cannot read the server's
``/proc/<pid>/environ``. Otherwise (``off``, or a server that is not root) the
server says at start that replicas share its user: single-user mode.

The composition root calls :func:`setup_isolation` once; it returns the options the
local executor needs.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from plinth.config import ServerConfig
from plinth.services.workdirs import Isolation, isolate_workdirs
from plinth.store.db import Database
from plinth.store.models import Group, Workload

__all__ = ["SINGLE_USER_NOTICE", "GroupUsers", "os_user_name", "setup_isolation"]

log = logging.getLogger("plinth.isolation")

SINGLE_USER_NOTICE = (
    "single-user mode: replicas run as this server's OS user ({user}), so members' "
    "code can read and change everything this user can -- PLINTH_HOME (the store, "
    "admin.token, other groups' logs and code) and this process's environment. Use it "
    "for one trusted team only. To isolate groups, run the server as root with "
    "isolation.mode auto or users (one OS user per group), as the systemd service "
    "in docs/security.md does"
)
_NAME_CHARS = re.compile(r"[^a-z0-9_-]+")
#: Linux user names are at most 32 characters.
_MAX_USER = 32


def os_user_name(prefix: str, group_id: int, group: str) -> str:
    """The OS user a group's replicas run as: ``<prefix><id>-<name>``, lower case,
    at most 32 characters (the id keeps it unique when the name is cut)."""
    base = f"{prefix}{group_id}-"
    return (base + _NAME_CHARS.sub("-", group.lower()))[:_MAX_USER].rstrip("-")


class GroupUsers:
    """Creates (once) and looks up the OS user of each quota group."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._known: dict[int, tuple[int, int]] = {}

    def ensure(self, group_id: int, group: str) -> tuple[int, int]:
        """(uid, gid) of the group's OS user, created as a system user when missing.
        Raises RuntimeError naming the user when it cannot be created."""
        with self._lock:
            hit = self._known.get(group_id)
            if hit is not None:
                return hit
            name = os_user_name(self.prefix, group_id, group)
            entry = _lookup(name) or _create(name)
            if entry.pw_uid == 0:
                raise RuntimeError(f"OS user {name} is root: refusing to run replicas as it")
            self._known[group_id] = (entry.pw_uid, entry.pw_gid)
            return self._known[group_id]


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _create(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    nologin = shutil.which("nologin") or "/usr/sbin/nologin"
    done = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", nologin, "--comment", "Plinth replicas", name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    entry = _lookup(name)  # another server may have created it meanwhile: fine
    if entry is None:
        raise RuntimeError(
            f"cannot create the OS user {name} for replicas: "
            f"{(done.stderr or done.stdout).strip() or f'useradd exited {done.returncode}'}"
        )
    return entry


def _owner_lookup(db: Database, users: GroupUsers) -> Any:
    def owner_of(workload_id: str) -> tuple[int, int]:
        with db.read() as s:
            row = s.execute(
                select(Group.id, Group.name)
                .join(Workload, Workload.group_id == Group.id)
                .where(Workload.id == workload_id)
            ).one()
        return users.ensure(row.id, row.name)

    return owner_of


def setup_isolation(db: Database, cfg: ServerConfig, home: Path) -> dict[str, Any]:
    """Decide who replicas run as, say it in the log, and return the local executor's
    options for running members' code: ``{"run_as_owner": bool, "log_max_bytes":
    int}``. Raises RuntimeError when isolation is asked for (``mode: users``) but the
    server is not root."""
    limits = {"log_max_bytes": cfg.logs.max_per_replica}
    iso = cfg.isolation
    if iso.isolates():
        if os.geteuid() != 0:
            raise RuntimeError(
                "isolation.mode is 'users' but the server is not root: it cannot run "
                "replicas as other users (use mode 'auto' or 'off', or run it as root)"
            )
        users = GroupUsers(iso.user_prefix)
        isolate_workdirs(home, Isolation(Path(iso.run_root), _owner_lookup(db, users)))
        log.info(
            "replicas run as one OS user per group (%s<id>-<group>), in %s; "
            "PLINTH_HOME %s is the server's alone (0700)",
            iso.user_prefix, iso.run_root, home,
        )  # fmt: skip
        return {"run_as_owner": True, **limits}
    isolate_workdirs(home, None)
    log.warning(SINGLE_USER_NOTICE.format(user=_whoami()))
    return {"run_as_owner": False, **limits}


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
