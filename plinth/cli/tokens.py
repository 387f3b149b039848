"""``plinth token ...``: named tokens with an expiry; list and revoke."""

from __future__ import annotations

from typing import Annotated

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client

app = typer.Typer(help="API tokens: create (named, expiring), list, revoke.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name to tell the token by, e.g. laptop.")],
    expires: Annotated[
        str | None, typer.Option(help="Lifetime: 90s, 12h, 30d [default: until revoked].")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Another user's (admin).")] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Create a token and print it (shown only this once; -o json for its id too)."""
    created = get_client(ctx).tokens.create(name, expires_in=expires, user=user)
    if output is out.Output.json:
        out.print_json(created)
        return
    until = out.fmt_time(created.get("expires_at")) if created.get("expires_at") else "revoked"
    out.note(f"Token {created['id']} ({name}) for {created['user']}, valid until {until}.")
    out.print_line(created["token"])


@app.command("list")
def list_(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Another user's tokens (admin).")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user's tokens (admin).")] = False,
    output: OutputOption = out.Output.table,
) -> None:
    """List tokens (never their secrets): yours by default."""
    tokens = get_client(ctx).tokens.list(user=user, all_users=all_users)
    if output is out.Output.json:
        out.print_json(tokens)
        return
    out.print_table(
        ["ID", "NAME", "USER", "STATE", "CREATED", "EXPIRES"],
        [
            [t["id"], out.escape(t.get("name") or "-"), out.escape(t["user"]), t["state"],
             out.fmt_time(t.get("created_at")), out.fmt_time(t.get("expires_at"))]
            for t in tokens
        ],
    )  # fmt: skip


@app.command()
def revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id (plinth token list).")],
    output: OutputOption = out.Output.table,
) -> None:
    """Revoke a token: it is refused (401) from now on."""
    done = get_client(ctx).tokens.revoke(token_id)
    if output is out.Output.json:
        out.print_json(done)
        return
    out.note(f"Revoked token {done['id']} ({done.get('name') or 'unnamed'}) of {done['user']}.")
