"""The environment contract of each replica (DESIGN.md, docs/api.md). Pure.

Every replica gets PLINTH_WORKLOAD_ID, PLINTH_ROLE, PLINTH_REPLICA, PLINTH_ATTEMPT,
PLINTH_ROLES (JSON role -> ["host:port", ...] in replica order), PLINTH_PORT,
PLINTH_PARAMS (JSON), PLINTH_URL, PLINTH_TOKEN; the replicas of role ``worker`` (or
of the only role, when there is one) also get MASTER_ADDR/MASTER_PORT (worker 0's,
resp. replica 0's, address and port), RANK and WORLD_SIZE for torch.distributed.
The role's own ``env`` is applied first, so the contract always wins.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ReplicaAddress", "rendezvous_role", "replica_env"]


@dataclass(frozen=True)
class ReplicaAddress:
    role: str
    replica: int
    host: str
    port: int


def rendezvous_role(roles: Sequence[str]) -> str | None:
    """The role whose replicas form the torch.distributed group: ``worker``, or the only role."""
    if "worker" in roles:
        return "worker"
    if len(roles) == 1:
        return roles[0]
    return None


def replica_env(
    *,
    workload_id: str,
    role: str,
    replica: int,
    attempt: int,
    addresses: Sequence[ReplicaAddress],
    params: Mapping[str, Any],
    url: str,
    token: str,
    role_env: Mapping[str, str],
) -> dict[str, str]:
    """The variables to set for one replica (on top of the server's environment)."""
    roles: dict[str, list[str]] = {}
    for a in sorted(addresses, key=lambda a: (a.role, a.replica)):
        roles.setdefault(a.role, []).append(f"{a.host}:{a.port}")
    me = next(a for a in addresses if a.role == role and a.replica == replica)
    env = dict(role_env)
    env.update(
        {
            "PLINTH_WORKLOAD_ID": workload_id,
            "PLINTH_ROLE": role,
            "PLINTH_REPLICA": str(replica),
            "PLINTH_ATTEMPT": str(attempt),
            "PLINTH_ROLES": json.dumps(roles, separators=(",", ":")),
            "PLINTH_PORT": str(me.port),
            "PLINTH_PARAMS": json.dumps(dict(params), separators=(",", ":")),
            "PLINTH_URL": url,
            "PLINTH_TOKEN": token,
            # The server's secrets are not the replica's business.
            "PLINTH_ADMIN_TOKEN": "",
        }
    )
    # `python` in a command means the server's interpreter (with plinth installed).
    path = env.get("PATH", os.environ.get("PATH", ""))
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")  # logs arrive as they are written
    dist = rendezvous_role(list(roles))
    if dist == role:
        master = next(a for a in addresses if a.role == role and a.replica == 0)
        env.update(
            {
                "MASTER_ADDR": master.host,
                "MASTER_PORT": str(master.port),
                "RANK": str(replica),
                "WORLD_SIZE": str(len(roles[role])),
            }
        )
    return env
