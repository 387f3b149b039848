"""``serve()``: the API, control loop and executor in one process (``plinth server``).

Run directly: ``python -m plinth.server [--host H] [--port P] [--config FILE]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import uvicorn

from plinth.config import ConfigError, load_config

__all__ = ["main", "serve"]


class _Server(uvicorn.Server):
    """Prints the contract's ready line once the socket is bound."""

    def __init__(self, config: uvicorn.Config, app: Any, host: str, port: int) -> None:
        super().__init__(config)
        self._app = app
        self._where = (host, port)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self._where
            if port == 0 and self.servers:
                port = self.servers[0].sockets[0].getsockname()[1]
                # Replicas get PLINTH_URL: tell the control loop the real port.
                ctx = getattr(self._app.state, "plinth", None)
                if ctx is not None and ctx.cfg.url is None:
                    ctx.loop.url = f"http://{_client_host(host)}:{port}"
            print(f"Plinth server listening on http://{host}:{port}", file=sys.stderr, flush=True)


def _client_host(host: str) -> str:
    """The address replicas use to reach a server bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def serve(host: str = "127.0.0.1", port: int = 8321, config_path: str | None = None) -> None:
    """Run the server until interrupted (blocking).

    Environment: PLINTH_HOME (default ~/.plinth), PLINTH_DATABASE_URL, PLINTH_CONFIG,
    PLINTH_ADMIN_TOKEN. Raises ConfigError for an invalid configuration file.
    """
    from plinth.api.app import create_app

    cfg = load_config(config_path)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The control loop shares the GIL with request threads; a woken loop should not wait
    # CPython's default 5 ms for a busy request thread to yield (submit-to-running latency).
    sys.setswitchinterval(0.001)
    app = create_app(cfg, url=f"http://{_client_host(host)}:{port}")
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )
    _Server(config, app, host, port).run()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry for ``python -m plinth.server``."""
    ap = argparse.ArgumentParser(prog="python -m plinth.server", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8321)
    ap.add_argument("--config", default=None, help="YAML config file (or PLINTH_CONFIG)")
    args = ap.parse_args(argv)
    try:
        serve(args.host, args.port, args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
