"""docs/scale-out.md's "Try it on one machine", followed word for word.

The doc marks the blocks to run (``<!-- one-machine: shell|run|file NAME -->`` before a
fenced block); this test reads them from the doc, so the two cannot drift:

* ``shell``: the command that opens the shell the rest runs in (network, process and
  mount namespaces of its own); the rest is given to it as a script;
* ``file NAME``: written as ``NAME`` in the working directory first;
* ``run``: the commands, in order (``set -euo pipefail``: any failing command fails it).

Between the doc's last two blocks (before it stops everything) the test adds two
checks of its own: the job's replicas as JSON, and every TCP listener of the namespace.

The namespaces keep it apart from every other Ray cluster on the machine: its own
loopback (so its ports collide with nothing), its own process table (so its ``ray
stop`` stops only its own processes), its own ``TMPDIR`` and ``HOME`` (Ray's session
folders and ``~/.ray``); and everything started in it ends with it. PostgreSQL is
reached through its Unix socket (a fresh schema); the test skips when it is absent,
or when namespaces cannot be made, except under ``CI=true``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from _executor_helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scale-out.md"
PG_SOCKET_DIR = "/var/run/postgresql"
#: What `ray start` prints when a node's agent missed the raylet's start-up window.
RAY_START_RACE = "The current node timed out during startup"
#: ``<!-- one-machine: KIND -->`` then a fenced block: (kind, body).
MARKED = re.compile(
    r"<!-- one-machine: ([^>]+?) -->\n```[\w-]*\n(.*?)^```", re.DOTALL | re.MULTILINE
)

#: Prints every TCP listener of the (network namespace's) machine as JSON [address, port].
LISTENERS_PY = r"""
import ipaddress, json
out = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(table) as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] != "0A":  # LISTEN
                continue
            hexaddr, hexport = parts[1].split(":")
            raw = bytes.fromhex(hexaddr)
            addr = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
                addr = addr.ipv4_mapped
            out.append([str(addr), int(hexport, 16)])
print(json.dumps(out))
"""


def doc_steps(text: str) -> list[tuple[str, str]]:
    """The doc's marked blocks, in order: (kind, body)."""
    return [(kind.strip(), body) for kind, body in MARKED.findall(text)]


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; it is required under CI=true", pytrace=False)
    pytest.skip(why)


def test_the_doc_marks_a_shell_its_files_and_commands_that_end_with_ray_stop() -> None:
    steps = doc_steps(DOC.read_text())
    kinds = [kind for kind, _ in steps]
    assert kinds[0] == "shell" and kinds.count("shell") == 1, kinds
    assert {"file server.yaml", "file hello-ray.yaml"} <= set(kinds)
    runs = [body for kind, body in steps if kind == "run"]
    assert "ray start --head" in runs[0] and "ray start --address" in runs[0]
    assert "plinth server --config server.yaml" in "".join(runs)
    assert runs[-1].split() == ["kill", "%1", "ray", "stop"]


def _namespace_shell(command: str) -> list[str]:
    argv = shlex.split(command)
    if os.geteuid() != 0 and argv[0] == "unshare":
        argv[1:1] = ["--user", "--map-root-user"]
    return argv


def _socket_url(tcp_url: str) -> str:
    """The same database and schema as `tcp_url`, through PostgreSQL's Unix socket."""
    parts = urlsplit(tcp_url)
    query = parse_qs(parts.query)
    user = parts.username or "postgres"
    options = query.get("options", [""])[0]
    url = f"postgresql+psycopg://{user}@{parts.path}?host={PG_SOCKET_DIR}"
    return url + (f"&options={options.replace('=', '%3D')}" if options else "")


def _our_processes(marker: str) -> list[str]:
    """Processes of this machine whose command line or environment mentions `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker.encode() in cmd or marker.encode() in env:
            words = cmd.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {words[:200]}")
    return found


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_one_machine_set_up_runs_as_written(pg_schemas: Callable[[], str]) -> None:
    pytest.importorskip("ray")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "ray").exists() or not (bin_dir / "plinth").exists():
        _unavailable(f"`ray` and `plinth` are not installed next to {sys.executable}")
    steps = doc_steps(DOC.read_text())
    shell = _namespace_shell(steps[0][1].strip())
    probe = subprocess.run(
        [*shell, "-c", "ip link set lo up"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        _unavailable(f"cannot make namespaces ({shell}): {probe.stderr.strip()}")
    if not os.path.exists(os.path.join(PG_SOCKET_DIR, ".s.PGSQL.5432")):
        _unavailable(f"PostgreSQL's Unix socket is not in {PG_SOCKET_DIR}")
    db_url = _socket_url(pg_schemas())

    works: list[Path] = []
    try:
        # A raylet gives its agent 15 s (fixed in Ray) to report its ports, and aborts
        # the node's start when the agent misses that on a busy machine. That race of
        # Ray's start-up is tried again, in a fresh namespace; nothing else is.
        for _ in range(3):
            work = Path(tempfile.mkdtemp(prefix="plinth-doc-", dir="/tmp"))
            works.append(work)
            returncode, output = _follow_the_doc(steps, shell, work, db_url)
            if returncode == 0 or RAY_START_RACE not in output:
                break
        checks = work / "checks"
        server_log = work / "server.log"
        detail = output[-6000:] + (
            "\n--- server.log ---\n" + server_log.read_text()[-4000:] if server_log.exists() else ""
        )  # fmt: skip
        assert returncode == 0, detail

        # The job ran on both nodes, one replica on each, and succeeded.
        replicas = json.loads((checks / "replicas.json").read_text())
        assert sorted((r["replica"], r["state"]) for r in replicas) == [
            (0, "succeeded"), (1, "succeeded")
        ], replicas  # fmt: skip
        assert {r["node"] for r in replicas} == {"head", "w1"}, replicas
        for i in (0, 1):
            assert f"replica {i} of " in output, detail
        assert re.search(r"\bhead\b", output) and re.search(r"\bw1\b", output)

        # Nothing listened beyond loopback: the namespace's only addresses are loopback
        # ones (so even a wildcard listener is reachable from this machine only).
        addresses = (checks / "addresses.txt").read_text().split("\n")
        nets = [line.split()[3] for line in addresses if line.strip()]
        assert nets and all(ipaddress.ip_interface(n).is_loopback for n in nets), addresses
        listeners = json.loads((checks / "listeners.json").read_text())
        assert any(port == 6380 for _, port in listeners), listeners
        beyond = [
            (a, p) for a, p in listeners
            if not ipaddress.ip_address(a).is_loopback and not ipaddress.ip_address(a).is_unspecified
        ]  # fmt: skip
        assert beyond == [], f"listening beyond loopback: {beyond}"
        assert "Stopped all" in output, detail

        # Every process it started has ended (the namespace took the rest with it).
        for w in works:
            wait_for(lambda w=w: not _our_processes(str(w)), what="the doc's processes to end")
    finally:
        for w in works:
            shutil.rmtree(w, ignore_errors=True)


def _follow_the_doc(
    steps: list[tuple[str, str]], shell: list[str], work: Path, db_url: str
) -> tuple[int, str]:
    """Write the doc's files into `work`, run its commands in the doc's shell there:
    (exit status, output). `work` is short: Ray's Unix sockets live under TMPDIR, and
    their paths may not exceed 107 bytes."""
    checks = work / "checks"
    checks.mkdir()
    (work / "home").mkdir()
    runs: list[str] = []
    for kind, body in steps[1:]:
        if kind.startswith("file "):
            (work / kind.split(None, 1)[1]).write_text(body)
        elif kind == "run":
            runs.append(body)
        else:
            raise AssertionError(f"unknown block kind {kind!r} in {DOC}")
    ours = (
        '\nplinth job replicas "$job" -o json > "$PLINTH_DOC_CHECKS/replicas.json"\n'
        f'python -c {shlex.quote(LISTENERS_PY)} > "$PLINTH_DOC_CHECKS/listeners.json"\n'
        'ip -o addr > "$PLINTH_DOC_CHECKS/addresses.txt"\n'
    )  # fmt: skip
    script = "set -euo pipefail\n" + "\n".join([*runs[:-1], ours, runs[-1]])
    (work / "steps.sh").write_text(script)
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PLINTH_", "RAY_")) or k == "PLINTH_ISOLATION"
    }  # fmt: skip
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(work / "home"), "TMPDIR": str(work), "PLINTH_DATABASE_URL": db_url,
        "PLINTH_DOC_CHECKS": str(checks), "RAY_USAGE_STATS_ENABLED": "0",
        # The raylet's wait for its agents to register (see the doc's loopback section).
        "RAY_agent_register_timeout_ms": "180000",
    })  # fmt: skip
    with open(work / "output.log", "wb") as log:
        proc = subprocess.Popen(
            [*shell, str(work / "steps.sh")], cwd=work, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=400)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the namespace's processes end with it
            proc.wait()
    return proc.returncode, (work / "output.log").read_text(errors="replace")
