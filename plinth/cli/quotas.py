"""``plinth quota ...`` and ``plinth reservation ...``: expansions and reservations."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError, parse_quantities, parse_time

quota_app = typer.Typer(
    help="Time-boxed quota expansions: grant and revoke (admin), list with history.",
    no_args_is_help=True,
)
reservation_app = typer.Typer(
    help="Reservations: capacity kept free for a group or user during a window.",
    no_args_is_help=True,
)

TIME_HELP = "ISO-8601 (UTC unless a zone is given), 'now', or relative: +2h, +30m, +1d."
GroupOpt = Annotated[str | None, typer.Option("--group", help="The group it is for.")]
UserOpt = Annotated[str | None, typer.Option("--user", help="The user it is for.")]


def _owner(group: str | None, user: str | None) -> None:
    if (group is None) == (user is None):
        raise InputError("give exactly one of --group or --user")


def _why(row: dict[str, Any]) -> str:
    """The grant's reason, and who revoked it and why when it was."""
    text = row.get("reason") or ""
    if row.get("revoked_by"):
        text += f" (revoked by {row['revoked_by']}: {row.get('revoke_reason') or ''})"
    return text


def _who(row: dict[str, Any]) -> str:
    return f"group {row['group']}" if row.get("group") else f"user {row.get('user')}"


@quota_app.command("expand")
def expand(
    ctx: typer.Context,
    add: Annotated[
        str, typer.Option(help="Extra quota, e.g. gpu=2 or cpu=8,memory=32Gi.", metavar="K=V,...")
    ],
    until: Annotated[str, typer.Option(help=f"When it ends. {TIME_HELP}")],
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")],
    group: GroupOpt = None,
    user: UserOpt = None,
    start: Annotated[
        str | None, typer.Option("--from", help=f"When it starts (default now). {TIME_HELP}")
    ] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Grant a group or user extra quota for a window (admin); it expires by itself."""
    _owner(group, user)
    e = get_client(ctx).quota_expansions.grant(
        add=parse_quantities(add, "--add"), until=parse_time(until, "--until"),
        start=parse_time(start, "--from") if start else None, reason=reason,
        group=group, user=user,
    )  # fmt: skip
    if output is out.Output.json:
        out.print_json(e)
        return
    out.print_fields([
        ("id", e.get("id")), ("for", _who(e)), ("add", out.fmt_resources(e.get("add"))),
        ("from", out.fmt_time(e.get("start"))), ("until", out.fmt_time(e.get("end"))),
        ("status", e.get("status")), ("reason", out.escape(e.get("reason"))),
        ("granted by", out.escape(e.get("granted_by"))),
    ])  # fmt: skip


@quota_app.command("revoke")
def revoke(
    ctx: typer.Context,
    expansion_id: Annotated[int, typer.Argument(metavar="ID", help="The expansion's id.")],
    reason: Annotated[str, typer.Option(help="Why it is revoked (kept in the history).")],
    output: OutputOption = out.Output.table,
) -> None:
    """End an expansion now (admin): no new work is admitted under it; work already
    admitted keeps running as borrowing and may be reclaimed."""
    if not reason.strip():
        raise InputError("--reason: say why the expansion is revoked")
    e = get_client(ctx).quota_expansions.revoke(expansion_id, reason=reason)
    if output is out.Output.json:
        out.print_json(e)
        return
    out.print_fields([
        ("id", e.get("id")), ("for", _who(e)), ("add", out.fmt_resources(e.get("add"))),
        ("status", e.get("status")), ("granted by", out.escape(e.get("granted_by"))),
        ("revoked by", out.escape(e.get("revoked_by"))),
        ("revoked at", out.fmt_time(e.get("revoked_at"))),
        ("reason", out.escape(e.get("revoke_reason"))),
    ])  # fmt: skip


@quota_app.command("list")
def list_expansions(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option(help="Only expansions in force now.")] = False,
    output: OutputOption = out.Output.table,
) -> None:
    """List expansions with history, newest first (members: their group's and own)."""
    rows = get_client(ctx).quota_expansions.list(active=active)
    if output is out.Output.json:
        out.print_json(rows)
        return
    out.print_table(
        ["ID", "FOR", "ADD", "FROM", "UNTIL", "STATUS", "GRANTED BY", "REASON"],
        [
            [str(r["id"]), out.escape(_who(r)), out.fmt_resources(r.get("add")),
             out.fmt_time(r.get("start")), out.fmt_time(r.get("end")), r.get("status"),
             out.escape(r.get("granted_by")), out.escape(_why(r))]
            for r in rows
        ],
    )  # fmt: skip


@reservation_app.command("create")
def create_reservation(
    ctx: typer.Context,
    resources: Annotated[
        str, typer.Option(help="What to keep free, e.g. cpu=4,memory=8Gi.", metavar="K=V,...")
    ],
    start: Annotated[str, typer.Option("--from", help=f"When it starts. {TIME_HELP}")],
    until: Annotated[str, typer.Option(help=f"When it ends. {TIME_HELP}")],
    group: GroupOpt = None,
    user: UserOpt = None,
    node: Annotated[str | None, typer.Option(help="Hold it on this node.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Book capacity for a group or user (admin)."""
    _owner(group, user)
    r = get_client(ctx).reservations.create(
        resources=parse_quantities(resources, "--resources"),
        start=parse_time(start, "--from"), until=parse_time(until, "--until"),
        group=group, user=user, node=node, reason=reason,
    )  # fmt: skip
    if output is out.Output.json:
        out.print_json(r)
        return
    out.print_fields([
        ("id", r.get("id")), ("for", _who(r)), ("resources", out.fmt_resources(r.get("resources"))),
        ("node", r.get("node") or "(any)"), ("from", out.fmt_time(r.get("start"))),
        ("until", out.fmt_time(r.get("end"))), ("reason", out.escape(r.get("reason"))),
    ])  # fmt: skip


@reservation_app.command("list")
def list_reservations(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include ended reservations.")] = False,
    output: OutputOption = out.Output.table,
) -> None:
    """List reservations by start time."""
    rows = get_client(ctx).reservations.list(include_ended=all_)
    if output is out.Output.json:
        out.print_json(rows)
        return
    out.print_table(
        ["ID", "FOR", "RESOURCES", "NODE", "FROM", "UNTIL", "REASON"],
        [
            [r["id"], out.escape(_who(r)), out.fmt_resources(r.get("resources")),
             out.escape(r.get("node") or "(any)"), out.fmt_time(r.get("start")),
             out.fmt_time(r.get("end")), out.escape(r.get("reason"))]
            for r in rows
        ],
    )  # fmt: skip


@reservation_app.command("delete")
def delete_reservation(
    ctx: typer.Context, reservation_id: Annotated[str, typer.Argument(help="Reservation id.")]
) -> None:
    """Cancel a reservation (admin)."""
    get_client(ctx).reservations.delete(reservation_id)
    out.note(f"Deleted reservation {reservation_id}.")
