"""``plinth queue``: pending workloads in the scheduler's order with score breakdowns."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client


def _factors(score: dict[str, Any]) -> str:
    f, w = score.get("factors", {}), score.get("weights", {})
    return " ".join(f"{k}={f[k]:.2f}x{w.get(k, 0):g}" for k in f)


def queue(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Show at most this many entries.", min=1)] = 100,
    output: OutputOption = out.Output.table,
) -> None:
    """Pending workloads in order, each with its score and why it waits (members see
    their own group's; positions are over the whole queue)."""
    rows = get_client(ctx).jobs.queue(limit=limit)
    if output is out.Output.json:
        out.print_json(rows)
        return
    out.print_table(
        ["POS", "ID", "GROUP", "USER", "REQUESTS", "WAITING", "SCORE", "FACTORS", "REASON"],
        [
            [str(r["position"]), r["id"], out.escape(r["group"]), out.escape(r["user"]),
             out.fmt_resources(r.get("requests")), out.fmt_duration(r.get("waiting_s")),
             f"{r['score']['total']:.3f}", _factors(r["score"]),
             out.escape(r.get("reason") or ("starts next cycle" if r["outcome"] == "fit" else ""))]
            for r in rows
        ],
    )  # fmt: skip
