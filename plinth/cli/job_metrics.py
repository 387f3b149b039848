"""``plinth job metrics ID``: a job's live training metrics (loss, samples/s, ...)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client


def _columns(points: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for pt in points:
        names.update(dict.fromkeys(pt.get("values") or {}))
    return list(names)


def _time(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), UTC).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def _rows(points: list[dict[str, Any]], names: list[str]) -> list[list[Any]]:
    return [
        [_time(pt.get("time")), out.escape(f"{pt.get('role')}-{pt.get('replica')}"),
         pt.get("step"), *[_value((pt.get("values") or {}).get(n)) for n in names]]
        for pt in points
    ]  # fmt: skip


def _value(v: Any) -> str | None:
    return None if v is None else f"{v:.6g}"


def metrics(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="Job id (from `plinth job list`).")],
    name: Annotated[
        str | None, typer.Option("--name", help="Only this metric (e.g. loss).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new points until the job ends.")
    ] = False,
    output: OutputOption = out.Output.table,
) -> None:
    """Show the training metrics a job's replicas reported (loss, samples/s, AUC, ...).

    -o json prints {"points": [...]}; with --follow, one JSON point per line.
    """
    client = get_client(ctx)
    if not follow:
        points = client.metrics.list(job_id, name=name)
        if output is out.Output.json:
            out.print_json({"job": job_id, "points": points})
        elif not points:
            client.jobs.get(job_id)  # a job that is not there -> NotFound (exit 1)
            out.note(f"Job {job_id} has reported no metrics yet.")
        else:
            names = _columns(points)
            out.print_table(["TIME", "REPLICA", "STEP", *[n.upper() for n in names]],
                            _rows(points, names))  # fmt: skip
        return
    names: list[str] | None = None
    try:
        for pt in client.metrics.follow(job_id, name=name):
            if output is out.Output.json:
                out.print_line(json.dumps(pt))
                continue
            if names is None:
                names = _columns([pt])
                out.print_line("  ".join(["TIME", "REPLICA", "STEP", *[n.upper() for n in names]]))
            out.print_line("  ".join(str(c if c is not None else "-")
                                     for c in _rows([pt], names)[0]))  # fmt: skip
    except KeyboardInterrupt:
        out.note(f"\nStopped watching; job {job_id} keeps running.")
        raise typer.Exit(130) from None
