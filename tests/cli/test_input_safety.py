"""Ids in URL paths, malformed URLs and tokens, and 403 messages: the SDK and the
real ``plinth`` executable against a real server."""

from __future__ import annotations

import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import Client, InvalidInputError, NotFoundError

from ._helpers import Team, plinth, unique


def test_ids_are_one_encoded_path_segment(server: LocalServer, admin: Client) -> None:
    name = unique("victim")
    group = unique("g")
    admin.groups.create(group, {"cpu": 1})
    admin.users.create(name, group=group)
    # Before: the id was pasted into the path and `..` walked to /users/<name>.
    with pytest.raises(NotFoundError):
        admin.jobs.get(f"../users/{name}")
    with pytest.raises(NotFoundError):  # before: POST /users/<name>/tokens made a token
        admin.jobs.cancel(f"../users/{name}/tokens?")
    with pytest.raises(NotFoundError):
        admin.groups.get("../jobs?x=")
    for bad in ("", "  ", ".", ".."):
        with pytest.raises(InvalidInputError, match="job id"):
            admin.jobs.get(bad)
    with pytest.raises(InvalidInputError, match="user name"):
        admin.users.get("")


def test_cancel_through_dotdot_creates_no_token(server: LocalServer, admin_env: dict) -> None:
    name = unique("victim")
    group = unique("g")
    assert plinth(["group", "create", group, "--quota", "cpu=1"], admin_env).returncode == 0
    assert plinth(["user", "create", name, "--group", group], admin_env).returncode == 0
    r = plinth(["job", "cancel", f"../users/{name}/tokens?"], admin_env)
    assert r.returncode == 1 and "not found" in r.stderr.lower(), r.stderr
    assert "plt_" not in r.stdout


@pytest.mark.parametrize(
    ("args", "env_patch", "hint"),
    [
        (["--url", "http://[::1", "whoami"], {}, "invalid server URL"),
        (["whoami"], {"PLINTH_URL": "http://[::1"}, "PLINTH_URL"),
        (["whoami"], {"PLINTH_TOKEN": "tök€n"}, "PLINTH_TOKEN"),
        (["whoami"], {"PLINTH_TOKEN": "abc\ndef"}, "PLINTH_TOKEN"),
        (["job", "get", ""], {}, "job id must not be empty"),
    ],
)
def test_bad_url_token_or_id_is_a_one_line_error(
    admin_env: dict, args: list[str], env_patch: dict, hint: str
) -> None:
    r = plinth(args, {**admin_env, **env_patch})
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and hint in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "cannot reach" not in r.stderr


def test_403_shows_the_servers_reason(server: LocalServer, team: Team, tmp_path) -> None:
    r = plinth(["group", "create", unique("x"), "--quota", "cpu=1"], team.env)
    assert r.returncode == 1 and "needs an admin token" in r.stderr
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: t\ngroup: default\nroles:\n  main:\n    resources: {cpu: 0.1, memory: 32Mi}\n"
        "    command: [python, -c, '1']\n"
    )
    r = plinth(["job", "submit", str(spec)], team.env)
    assert r.returncode == 1, r.stderr
    assert "own group" in r.stderr and "needs an admin token" not in r.stderr, r.stderr


def _raw_request(url: str, head: str, body: bytes) -> tuple[int, str]:
    """Send `head` + `body` over a real socket; return (status, response text). The
    server answers before the declared body has been sent in full."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) == 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.decode(errors="replace")


def test_large_bodies_are_refused_before_they_are_read(server: LocalServer, team: Team) -> None:
    declared = 200 * 1024 * 1024  # 200 MB declared, 1 KiB sent: the answer must not wait
    for auth, expect in (("", 401), (f"Authorization: Bearer {team.token}\r\n", 413)):
        head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {declared}\r\n")  # fmt: skip
        status, text = _raw_request(server.url, head, b"{" + b" " * 1023)
        assert status == expect, text
    # Chunked (no Content-Length): counted while read, refused once over the limit.
    head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {team.token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")  # fmt: skip
    chunk = b" " * (256 * 1024)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    status, text = _raw_request(server.url, head, body)
    assert status == 413 and "api.max_body" in text, text
