"""``python -m plinth.sparse.server``: one parameter-server shard as a platform workload.

Reads the platform's environment (docs/distributed.md):

* ``PLINTH_ROLES`` (JSON role -> ["host:port", ...]): the number of shards is the number
  of ``ps`` replicas; ``PLINTH_REPLICA`` is this shard's index; ``PLINTH_PORT`` the port to
  bind (on 127.0.0.1 unless ``--host``);
* ``PLINTH_PARAMS`` (JSON): ``config.distributed.max_message_mb`` and
  ``config.distributed.metrics_every_s`` when given (the rest of the training config is
  the workers' business: they declare the tables in their ``hello``);
* ``PLINTH_URL`` / ``PLINTH_TOKEN`` / ``PLINTH_WORKLOAD_ID``: where the shard reports its
  rows, bytes and requests/s (nothing is reported without them).

The shard holds nothing until a worker's ``hello`` declares the tables and worker 0 tells
it to restore a checkpoint or start empty; it exits 0 when worker 0 sends ``shutdown``
at the end of training. ``--port``/``--shard``/``--shards`` override the environment (for
running shards by hand).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from plinth.sparse.ps.protocol import MAX_MESSAGE_BYTES
from plinth.sparse.ps.server import ShardServer
from plinth.sparse.ps.shard import Shard


def _env_json(name: str) -> dict[str, Any]:
    raw = os.environ.get(name, "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise SystemExit(f"{name} is not valid JSON; the platform sets it") from None
    return value if isinstance(value, dict) else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plinth.sparse.server",
                                 description="Serve one parameter-server shard.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=None, help="default: PLINTH_PORT, else any free")
    ap.add_argument("--shard", type=int, default=None, help="default: PLINTH_REPLICA")
    ap.add_argument("--shards", type=int, default=None,
                    help="default: the number of ps replicas in PLINTH_ROLES")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s ps %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per metrics post
    roles = _env_json("PLINTH_ROLES")
    shards = args.shards if args.shards is not None else len(roles.get("ps", [])) or 1
    index = args.shard if args.shard is not None else int(os.environ.get("PLINTH_REPLICA", "0"))
    port = args.port if args.port is not None else int(os.environ.get("PLINTH_PORT", "0"))
    dist = (_env_json("PLINTH_PARAMS").get("config") or {}).get("distributed") or {}
    max_bytes = int(float(dist.get("max_message_mb", MAX_MESSAGE_BYTES >> 20)) * (1 << 20))
    try:
        shard = Shard(index, shards)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    on_idle = None
    from plinth.train.reporting import MetricsReporter  # composition root: reporting is shared

    reporter = MetricsReporter.from_env()
    if reporter.enabled:
        def on_idle(s: Shard) -> None:
            st = s.stats()
            step = max((t.step for t in s.tables.values()), default=0)
            reporter.report("ps", index, step, {
                "rows": float(sum(st["rows"].values())),
                "bytes": float(sum(st["bytes"].values())),
                "requests_per_s": st["requests_per_s"],
            })
    server = ShardServer(shard, args.host, port, max_message_bytes=max_bytes, on_idle=on_idle,
                         idle_s=float(dist.get("metrics_every_s", 10.0)))
    print(f"plinth ps shard {index}/{shards} serving on {args.host}:{server.port}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        if on_idle is not None:  # the final figures, however short the run was
            on_idle(shard)
        reporter.close()
    print(f"plinth ps shard {index}/{shards}: shutdown requested; exiting", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
