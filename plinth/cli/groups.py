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


def _show(group: dict[str, Any], output: out.Output) -> None:
    if output is out.Output.json:
        out.print_json(group)
        return
    out.print_fields(
        [
            ("name", group.get("name")),
            ("quota", out.fmt_resources(group.get("quota"))),
            ("borrow limit", out.fmt_resources(group.get("borrow_limit"))),
            ("lend limit", out.fmt_resources(group.get("lend_limit"))),
            ("created", out.fmt_time(group.get("created_at"))),
        ]
    )


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name: lowercase letters, digits, '-'.")],
    quota: Annotated[str, typer.Option(help=QUOTA_HELP, metavar="K=V,...")],
    borrow_limit: Annotated[
        str | None,
        typer.Option(help="Most it may borrow from idle quota, e.g. cpu=4.", metavar="K=V,..."),
    ] = None,
    lend_limit: Annotated[
        str | None,
        typer.Option(
            help="Most of its idle quota others may borrow, e.g. cpu=2.", metavar="K=V,..."
        ),
    ] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Create a group with a nominal quota (admin)."""
    group = get_client(ctx).groups.create(
        name,
        parse_quantities(quota, "--quota"),
        borrow_limit=parse_quantities(borrow_limit, "--borrow-limit") if borrow_limit else None,
        lend_limit=parse_quantities(lend_limit, "--lend-limit") if lend_limit else None,
    )
    _show(dict(group), output)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """List groups (a member sees its own)."""
    groups = get_client(ctx).groups.list()
    if output is out.Output.json:
        out.print_json(groups)
        return
    out.print_table(
        ["NAME", "QUOTA", "BORROW LIMIT", "LEND LIMIT", "CREATED"],
        [
            [
                out.escape(g.get("name")),
                out.fmt_resources(g.get("quota")),
                out.fmt_resources(g.get("borrow_limit")),
                out.fmt_resources(g.get("lend_limit")),
                out.fmt_time(g.get("created_at")),
            ]
            for g in groups
        ],
    )


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
    output: OutputOption = out.Output.table,
) -> None:
    """Change a group's quota or limits (admin); what is not given stays."""
    from plinth.cli._parse import InputError

    if quota is None and borrow_limit is None and lend_limit is None:
        raise InputError("nothing to change; give --quota, --borrow-limit or --lend-limit")
    group = get_client(ctx).groups.update(
        name,
        quota=parse_quantities(quota, "--quota") if quota else None,
        borrow_limit=parse_quantities(borrow_limit, "--borrow-limit") if borrow_limit else None,
        lend_limit=parse_quantities(lend_limit, "--lend-limit") if lend_limit else None,
    )
    _show(dict(group), output)


@app.command()
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Group name.")]) -> None:
    """Delete a group (admin); refused while it has users or live workloads."""
    get_client(ctx).groups.delete(name)
    out.note(f"Deleted group {name}.")
