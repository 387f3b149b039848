"""``plinth group ...``: quota groups (teams)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import parse_quantities

app = typer.Typer(
    help="Quota groups (teams): create, list, show, change, delete.", no_args_is_help=True
)

QUOTA_HELP = "Resources as key=value list: cpu=8,memory=32Gi,gpu=2."


MaxJobOpt = Annotated[
    str | None,
    typer.Option(help="Admin cap: largest total demand of one job, e.g. gpu=8.", metavar="K=V,..."),
]
MaxRuntimeOpt = Annotated[
    str | None, typer.Option(help="Admin cap: longest max_runtime, e.g. 2d or 3600.")
]
MaxWorkloadsOpt = Annotated[
    int | None,
    typer.Option(help="Admin cap: most live workloads per user.", min=1),
]


def _status(group: dict[str, Any], key: str) -> str:
    st = group.get("status") or {}
    return out.fmt_resources(st.get(key))


def _show(group: dict[str, Any], output: out.Output) -> None:
    if output is out.Output.json:
        out.print_json(group)
        return
    fields = [
        ("name", group.get("name")),
        ("quota", out.fmt_resources(group.get("quota"))),
        ("borrow limit", out.fmt_limit(group.get("borrow_limit"), "none (may borrow any idle quota)")),
        ("lend limit", out.fmt_limit(group.get("lend_limit"), "none (lends all its idle quota)")),
        ("max job", out.fmt_limit(group.get("max_job"), "none")),
        ("max runtime", out.fmt_duration(group.get("max_runtime"))
         if group.get("max_runtime") else "-"),
        ("max workloads/user", group.get("max_workloads_per_user") or "-"),
        ("nominal now", _status(group, "nominal")),
        ("used", _status(group, "used")),
        ("borrowed", _status(group, "borrowed")),
        ("lent", _status(group, "lent")),
        ("created", out.fmt_time(group.get("created_at"))),
    ]  # fmt: skip
    for u in group.get("users") or []:
        fields.append((f"user {u['name']}", (f"used {out.fmt_resources(u.get('used'))}"
                       f", cap {out.fmt_limit(u.get('cap'))}")))  # fmt: skip
    for e in group.get("expansions") or []:
        who = f"group {e['group']}" if e.get("group") else f"user {e.get('user')}"
        fields.append((f"expansion {e['id']}", (f"{who} +{out.fmt_resources(e.get('add'))} "
                       f"until {out.fmt_time(e.get('end'))}: {e.get('reason')}")))  # fmt: skip
    out.print_fields(fields)


def _caps(max_job: str | None, max_runtime: str | None, max_workloads: int | None) -> dict:
    caps: dict[str, Any] = {}
    if max_job:
        caps["max_job"] = parse_quantities(max_job, "--max-job")
    if max_runtime:
        caps["max_runtime"] = max_runtime
    if max_workloads is not None:
        caps["max_workloads_per_user"] = max_workloads
    return caps


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name: lowercase letters, digits, '-'.")],
    quota: Annotated[str, typer.Option(help=QUOTA_HELP, metavar="K=V,...")],
    borrow_limit: Annotated[
        str | None,
        typer.Option(help="Most it may borrow from idle quota, e.g. cpu=4; a resource left"
                    " out is not limited (cpu=0 forbids borrowing cpu).", metavar="K=V,..."),
    ] = None,
    lend_limit: Annotated[
        str | None,
        typer.Option(
            help="Most of its idle quota others may borrow, e.g. cpu=2; a resource left out"
            " is lent without limit (cpu=0 lends no cpu).", metavar="K=V,..."
        ),
    ] = None,
    max_job: MaxJobOpt = None,
    max_runtime: MaxRuntimeOpt = None,
    max_workloads_per_user: MaxWorkloadsOpt = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Create a group with a nominal quota (admin)."""
    group = get_client(ctx).groups.create(
        name,
        parse_quantities(quota, "--quota"),
        borrow_limit=parse_quantities(borrow_limit, "--borrow-limit") if borrow_limit else None,
        lend_limit=parse_quantities(lend_limit, "--lend-limit") if lend_limit else None,
        **_caps(max_job, max_runtime, max_workloads_per_user),
    )
    _show(dict(group), output)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """List groups (a member sees its own) with their quota picture now: nominal (with
    active expansions), used, borrowed, lent; ``-o json`` adds per-user use."""
    groups = get_client(ctx).groups.list()
    if output is out.Output.json:
        out.print_json(groups)
        return
    out.print_table(
        ["NAME", "QUOTA", "NOMINAL NOW", "USED", "BORROWED", "LENT", "BORROW LIMIT",
         "LEND LIMIT"],
        [
            [
                out.escape(g.get("name")),
                out.fmt_resources(g.get("quota")),
                _status(g, "nominal"),
                _status(g, "used"),
                _status(g, "borrowed"),
                _status(g, "lent"),
                out.fmt_resources(g.get("borrow_limit")),
                out.fmt_resources(g.get("lend_limit")),
            ]
            for g in groups
        ],
    )  # fmt: skip


@app.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Show one group."""
    _show(dict(get_client(ctx).groups.get(name)), output)


@app.command()
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name.")],
    quota: Annotated[str | None, typer.Option(help=QUOTA_HELP, metavar="K=V,...")] = None,
    borrow_limit: Annotated[
        str | None, typer.Option(help="New borrow limit, e.g. cpu=4.", metavar="K=V,...")
    ] = None,
    lend_limit: Annotated[
        str | None, typer.Option(help="New lend limit, e.g. cpu=2.", metavar="K=V,...")
    ] = None,
    max_job: MaxJobOpt = None,
    max_runtime: MaxRuntimeOpt = None,
    max_workloads_per_user: MaxWorkloadsOpt = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Change a group's quota, limits or caps (admin); what is not given stays."""
    from plinth.cli._parse import InputError

    caps = _caps(max_job, max_runtime, max_workloads_per_user)
    if quota is None and borrow_limit is None and lend_limit is None and not caps:
        raise InputError(
            "nothing to change; give --quota, --borrow-limit, --lend-limit, --max-job, "
            "--max-runtime or --max-workloads-per-user"
        )
    group = get_client(ctx).groups.update(
        name,
        quota=parse_quantities(quota, "--quota") if quota else None,
        borrow_limit=parse_quantities(borrow_limit, "--borrow-limit") if borrow_limit else None,
        lend_limit=parse_quantities(lend_limit, "--lend-limit") if lend_limit else None,
        **caps,
    )
    _show(dict(group), output)


@app.command()
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Group name.")]) -> None:
    """Delete a group (admin); refused while it has users or live workloads."""
    get_client(ctx).groups.delete(name)
    out.note(f"Deleted group {name}.")
