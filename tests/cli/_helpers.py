"""Helpers for the CLI and SDK tests: run the real ``plinth`` executable, make teams."""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plinth.cli.local_server import LocalServer, plinth_command

ADMIN_TOKEN = "test-admin-token-7f3a9c2e5b"
NODE = {"name": "node-a", "cpu": 8, "memory": 16384, "gpu": 2}
REPO = Path(__file__).resolve().parents[2]
_names = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test in this session uses."""
    return f"{prefix}-{next(_names)}"


def plinth(
    args: list[str], env: dict[str, str], *, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``plinth`` executable; never raises on a non-zero exit."""
    return subprocess.run(
        [*plinth_command(), *args],
        env=env,
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def plinth_json(args: list[str], env: dict[str, str], **kwargs: object) -> object:
    """Run ``plinth ARGS -o json``; assert it succeeded and return the parsed output."""
    result = plinth([*args, "-o", "json"], env, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, f"plinth {args} failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@dataclass
class Team:
    """A group with one member; ``env`` runs the CLI as that member."""

    group: str
    user: str
    token: str
    env: dict[str, str]


def make_team(server: LocalServer, admin_env: dict[str, str], prefix: str = "team") -> Team:
    """Create a group and a member through the CLI, the way an admin would."""
    group = unique(prefix)
    user = unique(f"{prefix}-user")
    created = plinth(["group", "create", group, "--quota", "cpu=4,memory=8Gi,gpu=1"], admin_env)
    assert created.returncode == 0, created.stderr
    made = plinth(["user", "create", user, "--group", group], admin_env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token and "\n" not in token
    return Team(group=group, user=user, token=token, env=server.client_env(token))
