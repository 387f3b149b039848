"""Start JupyterLab for a notebook workload: ``python -m plinth.notebooks.launch``.

Run by the local executor as the notebook's one replica. Reads its contract from the
environment and replaces itself with ``jupyter lab`` (so signals reach jupyter-server,
which shuts its kernels down on SIGTERM):

- ``PLINTH_PORT``: the port to listen on, bound to ``PLINTH_NOTEBOOK_IP`` (default
  127.0.0.1);
- ``JUPYTER_TOKEN``: the session's own token (jupyter-server reads it from there, so it
  never appears on a command line);
- ``PLINTH_NOTEBOOK_DIR``: the user's persistent workspace, the server's root directory;
- ``PLINTH_URL``/``PLINTH_TOKEN``: inherited by every kernel, so the SDK works with no
  login.

Arguments are passed on to ``jupyter lab`` (the server's ``notebooks.jupyter_args``).
Exit codes: 2 when the contract is incomplete; otherwise jupyter-server's own.
"""

from __future__ import annotations

import os
import sys

__all__ = ["jupyter_command", "main"]


def jupyter_command(port: int, root: str, ip: str = "127.0.0.1") -> list[str]:
    """The argv that starts JupyterLab on ``ip:port`` serving ``root``."""
    return [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the port is the one the platform assigned
        f"--ServerApp.root_dir={root}",
        # Plinth fronts the session: no redirect to a browser, no xsrf dance for the
        # token-authenticated API, no update checks from a machine without internet.
        "--ServerApp.open_browser=False",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip


def main() -> int:
    port = os.environ.get("PLINTH_PORT", "")
    root = os.environ.get("PLINTH_NOTEBOOK_DIR", "")
    if not port.isdigit() or not root or not os.environ.get("JUPYTER_TOKEN"):
        print(
            "plinth.notebooks.launch: PLINTH_PORT, PLINTH_NOTEBOOK_DIR and JUPYTER_TOKEN "
            "must be set (the platform sets them for a notebook workload)",
            file=sys.stderr,
        )
        return 2
    if not os.path.isdir(root):
        print(f"plinth.notebooks.launch: workspace {root} does not exist", file=sys.stderr)
        return 2
    os.chdir(root)
    # Jupyter's runtime and config files go in the workspace's private corner, not in a
    # home directory the replica's OS user may not have.
    private = os.path.join(root, ".plinth-jupyter")
    os.makedirs(private, mode=0o700, exist_ok=True)
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", os.path.join(private, "runtime"))
    os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(private, "data"))
    os.environ.setdefault("IPYTHONDIR", os.path.join(private, "ipython"))
    os.environ.setdefault("HOME", root)
    argv = jupyter_command(int(port), root, os.environ.get("PLINTH_NOTEBOOK_IP", "127.0.0.1"))
    argv += sys.argv[1:]  # the server's notebooks.jupyter_args
    if os.geteuid() == 0:
        # Only in single-user mode (a root server without isolation): an isolated
        # replica never runs as root.
        argv.append("--allow-root")
    sys.stdout.flush()
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
