"""``make demo``: Plinth end to end on this machine, narrated.

1. start ``plinth server`` with a fresh PLINTH_HOME on a free loopback port;
2. as the admin (token from PLINTH_HOME/admin.token) create a group and a member;
3. as that member, submit examples/hello with --code and follow its logs to success;
4. show ``plinth job list``; stop the server;
5. run scripts/demo_train.py when it exists;
6. run scripts/demo_data.py (raw logs -> samples -> stats -> training) when it exists.

Exits non-zero, naming the step, when any step fails.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from plinth.cli.local_server import LocalServer, plinth_command

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello"
console = Console(highlight=False)


class StepFailed(Exception):
    pass


def step(number: int, title: str) -> None:
    console.print()
    console.rule(f"[bold cyan]Step {number}[/]  {title}", align="left")


def run(args: list[str], env: dict[str, str], *, capture: bool = False) -> str:
    """Run ``plinth ARGS``, echoing the command; raise StepFailed on a non-zero exit."""
    console.print(f"[bold]$ plinth {' '.join(args)}[/]", soft_wrap=True)
    result = subprocess.run(
        [*plinth_command(), *args],
        env=env,
        cwd=ROOT,
        check=False,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )
    if result.returncode != 0:
        raise StepFailed(f"`plinth {' '.join(args)}` exited with {result.returncode}")
    return result.stdout or ""


def _others_can_run(path: str) -> bool:
    """Whether a user other than the owner can execute ``path`` (every directory above
    it searchable by others, the file executable by others)."""
    real = Path(os.path.realpath(path))
    try:
        dirs_ok = all(d.stat().st_mode & stat.S_IXOTH for d in real.parents)
        return dirs_ok and bool(real.stat().st_mode & stat.S_IXOTH)
    except OSError:
        return False


def choose_isolation() -> None:
    """As root, the server runs each group's replicas as an OS user of its own. The demo's
    jobs run this Python; when it lies where other users cannot reach it (e.g. under a
    0700 /root), the demo runs single-user instead, and says so."""
    if os.geteuid() != 0 or "PLINTH_ISOLATION" in os.environ:
        return
    if not _others_can_run(sys.executable):
        os.environ["PLINTH_ISOLATION"] = "off"
        console.print(
            f"Note: this Python ({os.path.realpath(sys.executable)}) is not reachable by other "
            "OS users, so the demo runs replicas as you (isolation.mode off). A shared server "
            "installs Plinth where group users can run it: see docs/security.md."
        )


def main() -> int:
    choose_isolation()
    home = Path(tempfile.mkdtemp(prefix="plinth-demo-"))
    server = LocalServer(home)
    current = "starting"
    started = time.monotonic()
    try:
        step(1, "Start a Plinth server with a fresh home")
        current = "step 1 (start the server)"
        server.start()
        admin = server.admin_token()
        console.print(f"Server at [green]{server.url}[/], PLINTH_HOME={home}")
        console.print(f"The admin's token was written to {home / 'admin.token'}")
        as_admin = server.client_env(admin)

        step(2, "As the admin: create a team and a member")
        current = "step 2 (create a group and a member)"
        run(["group", "create", "demo", "--quota", "cpu=4,memory=8Gi,gpu=0"], as_admin)
        token = run(["user", "create", "alice", "--group", "demo"], as_admin, capture=True).strip()
        if not token:
            raise StepFailed("`plinth user create` printed no token")
        console.print(f"alice's token: {token[:6]}… (shown once, kept for the next steps)")
        as_alice = server.client_env(token)
        run(["whoami"], as_alice)

        step(3, "As alice: submit examples/hello (ps x1, worker x2) and follow its logs")
        current = "step 3 (run examples/hello)"
        hello = HELLO.relative_to(ROOT)
        run(["job", "submit", str(hello / "job.yaml"), "--code", str(hello), "--follow"], as_alice)

        step(4, "The job list")
        current = "step 4 (list jobs)"
        run(["job", "list"], as_alice)
        run(["node", "list"], as_alice)
    except StepFailed as exc:
        console.print(Panel(f"Demo failed at {current}: {exc}", style="red"))
        console.print(f"Server log ({server.log_path}):\n{server.log_tail()}", markup=False)
        server.stop()
        console.print(f"The server's home is kept for inspection: {home}", markup=False)
        return 1
    except Exception as exc:  # noqa: BLE001 - the demo names the failed step, whatever broke
        console.print(Panel(f"Demo failed at {current}: {type(exc).__name__}: {exc}", style="red"))
        server.stop()
        console.print(f"The server's home is kept for inspection: {home}", markup=False)
        return 1

    step(5, "Stop the server")
    code = server.stop()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: -15 is a clean stop.
    if code not in (0, -15):
        console.print(Panel(f"Demo failed at step 5: the server exited with {code}", style="red"))
        console.print(f"Server log ({server.log_path}):\n{server.log_tail()}", markup=False)
        return 1
    console.print("Server stopped.")
    shutil.rmtree(home, ignore_errors=True)

    train_demo = ROOT / "scripts" / "demo_train.py"
    if train_demo.exists():
        step(6, "Training demo (scripts/demo_train.py)")
        result = subprocess.run([sys.executable, str(train_demo)], cwd=ROOT, check=False)
        if result.returncode != 0:
            console.print(
                Panel(
                    f"Demo failed at step 6 (scripts/demo_train.py exited with {result.returncode})",
                    style="red",
                )
            )
            return 1

    data_demo = ROOT / "scripts" / "demo_data.py"
    if data_demo.exists():
        step(7, "Sample data demo (scripts/demo_data.py)")
        result = subprocess.run([sys.executable, str(data_demo)], cwd=ROOT, check=False)
        if result.returncode != 0:
            console.print(Panel(f"Demo failed at step 7 (scripts/demo_data.py exited with "
                                f"{result.returncode})", style="red"))
            return 1

    console.print()
    console.print(
        Panel(f"Demo finished successfully in {time.monotonic() - started:.1f}s.", style="green")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
