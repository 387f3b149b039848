"""The composition root and ``serve()``: API, control loop and executor in one process.

``control_plane()`` builds the running system from configuration -- the store
(migrated), the executor, the control loop, the admin's bootstrap, the reconcile
after a restart -- and starts the background services (``background_services``:
the ONE place where a new background service, e.g. a retention sweeper, is added).
The API (``plinth.api.app.create_app``) runs it in its lifespan.

Run directly: ``python -m plinth.server [--host H] [--port P] [--config FILE]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn

from plinth.config import ConfigError, RayExecutorConfig, ServerConfig, load_config

if TYPE_CHECKING:
    from plinth.api.context import AppContext
    from plinth.executors.base import Executor

__all__ = ["BackgroundService", "background_services", "control_plane", "main", "serve"]

log = logging.getLogger("plinth.server")


class BackgroundService(Protocol):
    """Something that runs beside the API for the server's life (its own thread)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def make_executor(cfg: ServerConfig, local: dict[str, Any] | None = None) -> Executor:
    """The executor named by ``cfg.executor``, with the configured nodes; `local`: more
    options of the local executor (who replicas run as, log caps)."""
    from plinth.executors.base import NodeCapacity, get_executor

    nodes = None
    if cfg.nodes is not None:
        # Already validated and parsed by the config (memory in MiB): hand them over as is.
        nodes = [
            NodeCapacity(name=n.name, cpu=n.cpu, memory_mib=n.memory, gpu=n.gpu, address=n.address)
            for n in cfg.nodes
        ]
    options: dict[str, Any] = {"nodes": nodes}
    if cfg.executor == "local":
        options["nice"] = cfg.executor_nice
        options.update(local or {})
    elif cfg.executor == "ray":  # docs/scale-out.md
        options.update((cfg.ray or RayExecutorConfig()).model_dump(), nice=cfg.executor_nice)
    return get_executor(cfg.executor, **options)


def background_services(ctx: AppContext) -> list[BackgroundService]:
    """Every background service of a running server, in start order (stopped in
    reverse). Add new ones here."""
    from plinth.services.deployment_follower import DeploymentFollower
    from plinth.services.notebook_monitor import NotebookMonitor
    from plinth.services.retention import RetentionSweeper

    ctx.notebooks = NotebookMonitor(ctx.db, ctx.cfg, ctx.home, ctx.loop.wake)
    return [ctx.loop, RetentionSweeper(ctx.db, ctx.home, ctx.cfg.retention), ctx.notebooks,
            DeploymentFollower(ctx.db, ctx.home)]


@contextmanager
def control_plane(cfg: ServerConfig, home: Path, db_url: str, url: str) -> Iterator[AppContext]:
    """Build and start the control plane; stop it when the block ends.

    `url` is what replicas get as PLINTH_URL (config ``url`` wins). Replicas keep
    running after the block ends: the next start re-adopts them (``reconcile``)."""
    from plinth.api.context import AppContext
    from plinth.scheduler.resources import Resources
    from plinth.services.auth import bootstrap_admin
    from plinth.services.control_loop import ControlLoop
    from plinth.services.isolation import setup_isolation
    from plinth.services.reconcile import reconcile
    from plinth.services.templates import register_builtin_templates
    from plinth.store.db import Database
    from plinth.store.migrate import upgrade

    db = Database(db_url)
    try:
        upgrade(db.engine)
        executor = make_executor(cfg, setup_isolation(db, cfg, home))  # replicas' OS users
        loop = ControlLoop(db, executor, cfg, home, cfg.url or url)
        total = sum((n.resources for n in loop.nodes), Resources())
        with db.session() as s:
            token = bootstrap_admin(s, home, total.to_dict())
            register_builtin_templates(s)
        report = reconcile(db, executor, cfg.jobs.grace)
        if report.readopted or report.lost or report.requeued or report.orphans_stopped:
            log.warning(
                "reconciled after restart: %d running replica(s) re-adopted, %d lost, "
                "%d orphaned replica(s) stopped, %d workload(s) requeued",
                report.readopted, report.lost, report.orphans_stopped, report.requeued,
            )  # fmt: skip
        ctx = AppContext(db=db, cfg=cfg, home=home, loop=loop, admin_token=token)
        started: list[BackgroundService] = []
        try:
            for service in background_services(ctx):
                service.start()
                started.append(service)
            loop.wake()
            yield ctx
        finally:
            for service in reversed(started):
                try:
                    service.stop()
                except Exception:
                    log.exception("stopping %s failed", type(service).__name__)
    finally:
        db.dispose()


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
    if cfg.executor != "local":  # an unreachable cluster is a clear error, not a traceback
        try:
            make_executor(cfg)
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"executor {cfg.executor!r}: {e}") from None
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
