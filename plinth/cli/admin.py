"""``plinth admin ...``: disabling users, the audit log, retention (admins)."""

from __future__ import annotations

from typing import Annotated

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client

app = typer.Typer(help="Administration: disable/enable users, audit log, gc.", no_args_is_help=True)


@app.command("disable-user")
def disable_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Disable a user: revoke every token it has; its workloads keep running."""
    done = get_client(ctx).admin.disable_user(name)
    if output is out.Output.json:
        out.print_json(done)
        return
    out.note(f"Disabled {done['name']}; {done['tokens_revoked']} token(s) revoked.")


@app.command("enable-user")
def enable_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Enable a disabled user (give it a new token: the old ones stay revoked)."""
    done = get_client(ctx).admin.enable_user(name)
    if output is out.Output.json:
        out.print_json(done)
        return
    out.note(f"Enabled {done['name']}; create a token with `plinth token create --user`.")


@app.command()
def audit(
    ctx: typer.Context,
    action: Annotated[
        str | None, typer.Option(help="One action (token.revoke) or a prefix (token.).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    output: OutputOption = out.Output.table,
) -> None:
    """Who changed quotas, expansions, users and tokens, and when."""
    records = get_client(ctx).admin.audit(action=action, limit=limit)
    if output is out.Output.json:
        out.print_json(records)
        return
    out.print_table(
        ["TIME", "ACTOR", "ACTION", "TARGET", "DETAILS"],
        [
            [out.fmt_time(r["time"]), out.escape(r["actor"]), r["action"],
             out.escape(r["target"]), out.escape(r.get("details") or "")]
            for r in records
        ],
    )  # fmt: skip


@app.command()
def gc(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """Sweep now: files of long-finished workloads, unused uploads (see retention:)."""
    report = get_client(ctx).admin.gc()
    if output is out.Output.json:
        out.print_json(report)
        return
    out.note(
        f"Removed the files of {len(report['workloads'])} finished workload(s), "
        f"{len(report['uploads'])} upload(s) and {len(report['code_versions'])} code "
        f"version(s); {out.fmt_bytes(report['bytes_freed'])} freed."
    )
