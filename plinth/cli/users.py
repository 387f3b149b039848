"""``plinth user ...``: users and their tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import parse_quantities

app = typer.Typer(
    help="Users: create (prints the token), list, show, new token.", no_args_is_help=True
)


def _fields(user: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("name", user.get("name")),
        ("group", user.get("group")),
        ("role", "admin" if user.get("admin") else "member"),
        ("cap", out.fmt_limit(user.get("cap"), "none (the group's quota applies)")),
        ("created", out.fmt_time(user.get("created_at"))),
    ]


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name: lowercase letters, digits, '-'.")],
    group: Annotated[str, typer.Option(help="The group (team) the user belongs to.")],
    cap: Annotated[
        str | None,
        typer.Option(help="Personal quota inside the group, e.g. cpu=2,gpu=1; a resource"
                    " left out is not capped (write 0 for zero).", metavar="K=V,..."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    output: OutputOption = out.Output.table,
) -> None:
    """Create a user (admin) and print its token, which is shown only this once.

    The token alone goes to stdout (TOKEN=$(plinth user create ...) works);
    with -o json, {"token": ..., "user": {...}}.
    """
    created = get_client(ctx).users.create(
        name, group, cap=parse_quantities(cap, "--cap") if cap else None, admin=admin
    )
    if output is out.Output.json:
        out.print_json(created)
        return
    user = created["user"]
    role = "admin" if user.get("admin") else "member"
    out.note(
        f"Created {role} {user.get('name')} in group {user.get('group')}. "
        "Its token is below; it is shown only once."
    )
    out.print_line(created["token"])


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """List users (admin)."""
    users = get_client(ctx).users.list()
    if output is out.Output.json:
        out.print_json(users)
        return
    out.print_table(
        ["NAME", "GROUP", "ROLE", "CAP", "CREATED"],
        [
            [
                out.escape(u.get("name")),
                out.escape(u.get("group")),
                "admin" if u.get("admin") else "member",
                out.fmt_resources(u.get("cap")) if u.get("cap") is not None else "-",
                out.fmt_time(u.get("created_at")),
            ]
            for u in users
        ],
    )


@app.command()
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Show one user."""
    user = get_client(ctx).users.get(name)
    if output is out.Output.json:
        out.print_json(user)
        return
    out.print_fields(_fields(dict(user)))


@app.command()
def token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Issue a new token for a user (admin, or the user itself) and print it."""
    new = get_client(ctx).users.new_token(name)
    if output is out.Output.json:
        out.print_json({"token": new})
        return
    out.print_line(new)
