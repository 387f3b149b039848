"""``plinth notebook ...``: start, list, get, stop and extend JupyterLab sessions."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError, parse_time
from plinth.client import PlinthError

app = typer.Typer(
    help="Notebooks: JupyterLab sessions with reserved resources (docs/notebooks.md).",
    no_args_is_help=True,
)

NotebookId = Annotated[str, typer.Argument(help="Session id (from `plinth notebook list`).")]


def _open_url(nb: dict[str, Any]) -> str | None:
    if not nb.get("url"):
        return None
    return f"{nb['url']}?token={nb['token']}" if nb.get("token") else nb["url"]


def show(nb: dict[str, Any], output: out.Output) -> None:
    if output is out.Output.json:
        out.print_json(nb)
        return
    window = nb.get("window") or {}
    activity = nb.get("activity") or {}
    out.print_fields([
        ("id", out.escape(nb.get("id"))),
        ("name", out.escape(nb.get("name"))),
        ("state", out.styled_state(nb.get("state"))),
        ("ready", "yes" if nb.get("ready") else "no"),
        ("url", out.escape(_open_url(nb) or "-")),
        ("reason", out.escape(nb.get("reason"))),
        ("group", out.escape(nb.get("group"))),
        ("user", out.escape(nb.get("user"))),
        ("resources", out.fmt_resources(nb.get("resources"))),
        ("idle timeout", out.fmt_duration(nb.get("idle_timeout"))),
        ("max lifetime", out.fmt_duration(nb.get("max_lifetime"))),
        ("ends", out.fmt_time(nb.get("ends_at"))),
        ("window", out.escape(f"{window.get('start')} .. {window.get('end')}" if window else "-")),
        ("kernels", f"{activity.get('kernels', '-')} ({activity.get('busy_kernels', 0)} busy)"
                    if activity else "-"),
        ("last activity", out.fmt_time(activity.get("last_activity"))),
        ("workspace", out.escape(nb.get("workspace") or "-")),
        ("created", out.fmt_time(nb.get("created_at"))),
        ("started", out.fmt_time(nb.get("started_at"))),
        ("finished", out.fmt_time(nb.get("finished_at"))),
    ])  # fmt: skip
    if nb.get("log_tail"):
        out.print_line("log (tail):")
        out.print_line(out.escape(nb["log_tail"]))


def _resources(cpu: float | None, memory: str | None, gpu: int | None) -> dict[str, Any] | None:
    res: dict[str, Any] = {}
    if cpu is not None:
        res["cpu"] = cpu
    if memory is not None:
        res["memory"] = int(memory) if memory.isdigit() else memory
    if gpu is not None:
        res["gpu"] = gpu
    return res or None


@app.command()
def start(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="A name for the session.")] = None,
    cpu: Annotated[float | None, typer.Option(help="Cores (fractions allowed).")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory: MiB, or 512Mi, 4Gi.")] = None,
    gpu: Annotated[int | None, typer.Option(min=0, help="Whole GPU devices.")] = None,
    idle_timeout: Annotated[str | None, typer.Option(
        "--idle-timeout", help="Stop after this long idle (30m); default: the group's.")] = None,
    max_lifetime: Annotated[str | None, typer.Option(
        "--max-lifetime", help="Stop this long after the start (8h); default: the group's.")] = None,
    at: Annotated[str | None, typer.Option(
        help="Book a window starting then (ISO time, or +2h); needs --for.")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="The booked window's length (2h).")] = None,
    group: Annotated[str | None, typer.Option(help="Admins: start it in this group.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until JupyterLab answers (not just until its process runs).")] = False,
    timeout: Annotated[float | None, typer.Option(
        help="With --wait: give up after this many seconds.")] = None,
    output: OutputOption = out.Output.table,
) -> None:  # fmt: skip
    """Start a JupyterLab session (or book one with --at and --for) and print its URL."""
    if (at is None) != (for_ is None):
        raise InputError("--at and --for go together: --at 2026-05-01T10:00 --for 2h")
    client = get_client(ctx)
    nb = client.notebooks.start(
        name=name, resources=_resources(cpu, memory, gpu), idle_timeout=idle_timeout,
        max_lifetime=max_lifetime, at=parse_time(at, "--at") if at else None,
        duration=for_, group=group,
    )  # fmt: skip
    if wait:
        try:
            nb = client.notebooks.wait_ready(nb["id"], timeout=timeout)
        except PlinthError as e:
            if output is out.Output.json:
                out.print_json(client.notebooks.get(nb["id"]))
            out.error(str(e))
            raise typer.Exit(1) from None
    show(nb, output)
    if output is not out.Output.json and not nb.get("ready"):
        out.note(f"{nb['id']} is {nb['state']}: `plinth notebook get {nb['id']}` shows its URL "
                 "once JupyterLab is ready")  # fmt: skip


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only sessions in this state.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """List sessions, newest first (a member sees its group's)."""
    nbs = get_client(ctx).notebooks.list(state=state, limit=limit)
    if output is out.Output.json:
        out.print_json(nbs)
        return
    out.print_table(
        ["ID", "NAME", "STATE", "READY", "USER", "RESOURCES", "ENDS", "URL"],
        [[out.escape(n.get("id")), out.escape(n.get("name")), out.styled_state(n.get("state")),
          "yes" if n.get("ready") else "no", out.escape(n.get("user")),
          out.fmt_resources(n.get("resources")), out.fmt_time(n.get("ends_at")),
          out.escape(n.get("url") or "-")] for n in nbs],
    )  # fmt: skip


@app.command()
def get(ctx: typer.Context, notebook_id: NotebookId, output: OutputOption = out.Output.table) -> None:
    """Show a session: state, URL (with its token, for its owner), timeouts, activity."""
    show(get_client(ctx).notebooks.get(notebook_id), output)


@app.command()
def stop(ctx: typer.Context, notebook_id: NotebookId, output: OutputOption = out.Output.table) -> None:
    """Stop a session: kernels shut down, resources return. Files stay in the workspace."""
    show(get_client(ctx).notebooks.stop(notebook_id), output)


@app.command()
def extend(
    ctx: typer.Context,
    notebook_id: NotebookId,
    by: Annotated[str, typer.Option("--by", help="How much longer (e.g. 2h).")],
    output: OutputOption = out.Output.table,
) -> None:
    """Push a session's maximum lifetime, within its group's cap."""
    show(get_client(ctx).notebooks.extend(notebook_id, by), output)


@app.command()
def events(ctx: typer.Context, notebook_id: NotebookId, output: OutputOption = out.Output.table) -> None:
    """A session's events: ready, warnings, and why it ended."""
    evs = get_client(ctx).notebooks.events(notebook_id)
    if output is out.Output.json:
        out.print_json(evs)
        return
    out.print_table(["TIME", "TYPE", "REASON"],
                    [[out.fmt_time(e.get("time")), out.escape(e.get("type")),
                      out.escape(e.get("reason"))] for e in evs])  # fmt: skip


@app.command()
def logs(ctx: typer.Context, notebook_id: NotebookId) -> None:
    """JupyterLab's output (why a session failed to start, for instance)."""
    client = get_client(ctx)
    offset = 0
    while True:
        chunk = client.notebooks.logs(notebook_id, offset=offset)
        sys.stdout.write(chunk.data.decode("utf-8", "replace"))
        if not chunk.data or chunk.offset == offset:
            break
        offset = chunk.offset
    sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
