"""``python -m plinth.serve PACKAGE [--name NAME] [--version V] [--port N] ...``

Serves one model package (a directory, or a ``file://`` URL of one). The port comes from
``--port``, else ``PLINTH_PORT``, else a free one; the server binds 127.0.0.1 unless
``--host`` says otherwise, and prints ``serving NAME version V on http://HOST:PORT`` once
it accepts requests (``--port-file`` also receives the port, for whoever started it).
The control token (see :mod:`plinth.serve.app`) comes from ``PLINTH_SERVE_CONTROL_TOKEN``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from plinth.serve.app import BatchSettings, create_app
from plinth.serve.host import ModelHost, PackageError
from plinth.serve.imports import skip_missing_optional_imports


def _package_path(arg: str) -> Path:
    if arg.startswith("file://"):
        return Path(arg.removeprefix("file://"))
    if "://" in arg:
        raise SystemExit(f"plinth.serve: {arg!r}: only package directories and file:// URLs "
                         "are supported")
    return Path(arg)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m plinth.serve", description=__doc__.split("\n")[0])
    p.add_argument("package", help="model package directory (or file:// URL)")
    p.add_argument("--name", default=None, help="model name (default: the directory's name)")
    p.add_argument("--version", default="1", help="version label reported with predictions")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $PLINTH_PORT, else free")
    p.add_argument("--port-file", type=Path, default=None)
    p.add_argument("--max-batch-rows", type=int, default=BatchSettings.max_batch_rows)
    p.add_argument("--max-delay-ms", type=float, default=BatchSettings.max_delay_s * 1000)
    p.add_argument("--max-queue-rows", type=int, default=BatchSettings.max_queue_rows)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads for the batch forward (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import uvicorn

    skip_missing_optional_imports()
    # One intra-op thread by default: a batch is at most a few thousand rows, so fanning
    # each op out costs more than it saves, and idle OpenMP threads spin on cores the
    # event loop needs (measured: 10x the latency on a loaded 2-core machine). Scale out
    # with replicas instead, or raise it on a dedicated many-core machine.
    import torch

    torch.set_num_threads(max(1, args.torch_threads))
    path = _package_path(args.package)
    try:
        host = ModelHost(args.name or path.resolve().name, path, args.version)
    except PackageError as e:
        print(f"plinth.serve: {e}", file=sys.stderr)
        return 2
    try:
        settings = BatchSettings(args.max_batch_rows, args.max_delay_ms / 1000,
                                 args.max_queue_rows)
        app = create_app(host, settings, os.environ.get("PLINTH_SERVE_CONTROL_TOKEN") or None)
    except ValueError as e:
        print(f"plinth.serve: {e}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else int(os.environ.get("PLINTH_PORT", "0"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, port))
    port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # Announce only once the server accepts connections (the lifespan has started).
    started = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await started(sockets=sockets)
        if args.port_file is not None:
            tmp = args.port_file.with_name(args.port_file.name + ".tmp")
            tmp.write_text(str(port))
            tmp.replace(args.port_file)
        print(f"serving {host.name} version {host.version} on http://{args.host}:{port}",
              flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
