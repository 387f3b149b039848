"""Fixtures for the CLI and SDK tests: one real ``plinth server`` for the session.

The server is a subprocess on a free 127.0.0.1 port with a fresh
``PLINTH_HOME`` (SQLite) and a declared node with GPUs that do not exist.
Each test makes its own group and users with unique names, so tests do not
depend on each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import TERMINAL_STATES, Client

from ._helpers import ADMIN_TOKEN, NODE, Team, make_team


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("plinth-home")
    # Members may use local git repositories under the tests' temporary directories.
    config = {
        "nodes": [NODE],
        "code": {"git_local_roots": [str(tmp_path_factory.getbasetemp())]},
    }
    local = LocalServer(home, config=config, admin_token=ADMIN_TOKEN)
    local.start()
    try:
        yield local
    finally:
        # Leave no replica behind: cancel whatever still runs before stopping.
        try:
            with Client(local.url, ADMIN_TOKEN) as client:
                for job in client.jobs.list(limit=1000):
                    if job["state"] not in TERMINAL_STATES:
                        client.jobs.cancel(job["id"])
        finally:
            local.stop()


@pytest.fixture(scope="session")
def admin_env(server: LocalServer) -> dict[str, str]:
    return server.client_env(ADMIN_TOKEN)


@pytest.fixture
def admin(server: LocalServer) -> Iterator[Client]:
    with Client(server.url, ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def team(server: LocalServer, admin_env: dict[str, str]) -> Team:
    return make_team(server, admin_env)
