"""The ``plinth`` command: a Typer app over the SDK (see docs/cli.md).

Exit codes: 0 success; 1 the server refused or could not be reached, or a
waited-for job did not succeed; 2 bad usage or input (fix the command line
or the spec file). Errors are one ``Error: ...`` line on stderr, never a
traceback. Nothing heavy (torch, numba, the server) is imported until a
command needs it, so every command starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, Settings, get_client
from plinth.cli._parse import InputError
from plinth.cli.admin import app as admin_app
from plinth.cli.data import app as data_app
from plinth.cli.deploy import app as deploy_app
from plinth.cli.groups import app as groups_app
from plinth.cli.job_metrics import metrics as job_metrics_command
from plinth.cli.jobs import app as jobs_app
from plinth.cli.models import app as models_app
from plinth.cli.nodes import app as nodes_app
from plinth.cli.notebooks import app as notebooks_app
from plinth.cli.queue import queue as queue_command
from plinth.cli.quotas import quota_app, reservation_app
from plinth.cli.scheduler import app as scheduler_app
from plinth.cli.templates import app as templates_app
from plinth.cli.tokens import app as tokens_app
from plinth.cli.users import app as users_app
from plinth.client import APIError, AuthError, InvalidInputError, PlinthError


class _PlinthGroup(TyperGroup):
    """Turns the SDK's and the CLI's own errors into ``Error: ...`` and an exit code.

    The root group's ``invoke`` runs every subcommand inside it, so this one
    place covers the whole CLI (including tests driven through CliRunner).
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (InputError, InvalidInputError) as exc:
            out.error(str(exc))
            raise typer.Exit(2) from None
        except AuthError as exc:
            out.error(_auth_message(exc))
            raise typer.Exit(1) from None
        except APIError as exc:
            out.error(f"{exc.message} (HTTP {exc.status})")
            raise typer.Exit(1) from None
        except PlinthError as exc:
            out.error(str(exc))
            raise typer.Exit(1) from None


def _auth_message(exc: AuthError) -> str:
    if exc.status == 401:
        return (
            f"{exc.message} (HTTP 401). Set PLINTH_TOKEN (or --token) to a valid token; "
            "an admin's is in $PLINTH_HOME/admin.token on the server."
        )
    # The server's own reason: an admin-only action, a scoped token, another group.
    return f"{exc.message} (HTTP 403)"


app = typer.Typer(
    cls=_PlinthGroup,
    name="plinth",
    help="Plinth: a self-hosted ML platform. Reads PLINTH_URL and PLINTH_TOKEN.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
jobs_app.command("metrics")(job_metrics_command)
app.add_typer(jobs_app, name="job")
app.add_typer(templates_app, name="template")
app.add_typer(groups_app, name="group")
app.add_typer(users_app, name="user")
app.add_typer(nodes_app, name="node")
app.add_typer(quota_app, name="quota")
app.add_typer(reservation_app, name="reservation")
app.add_typer(scheduler_app, name="scheduler")
app.add_typer(tokens_app, name="token")
app.add_typer(admin_app, name="admin")
app.add_typer(models_app, name="model")
app.add_typer(notebooks_app, name="notebook")
app.add_typer(deploy_app, name="deploy")
app.command("queue")(queue_command)
app.add_typer(data_app, name="data")

train_app = typer.Typer(help="Train models (runs in this process).", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _version(value: bool) -> None:
    if value:
        from plinth import __version__

        print(f"plinth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Server URL [default: $PLINTH_URL or http://127.0.0.1:8321]."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="API token [default: $PLINTH_TOKEN].", show_default=False),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    ctx.obj = Settings(url=url, token=token)


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8321,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML config (nodes, scheduler, upload caps) [default: $PLINTH_CONFIG]."),
    ] = None,
) -> None:
    """Run the Plinth server (API, scheduler and executor) in the foreground."""
    if config is not None and not config.is_file():
        raise InputError(f"--config: {str(config)!r} is not a file")
    try:
        from plinth.server import serve
    except ModuleNotFoundError as exc:
        if exc.name != "plinth.server":
            raise
        raise PlinthError("this installation has no server (plinth.server is missing)") from None
    from plinth.config import ConfigError

    try:
        serve(host=host, port=port, config_path=str(config) if config is not None else None)
    except ConfigError as exc:
        raise InputError(f"invalid server configuration: {exc}") from None
    except OSError as exc:
        raise PlinthError(f"cannot serve on {host}:{port}: {exc}") from None


@app.command()
def whoami(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """Show the user the token belongs to."""
    client = get_client(ctx)
    user = client.whoami()
    if output is out.Output.json:
        out.print_json(user)
        return
    role = "admin" if user.get("admin") else "member"
    out.print_line(f"{user.get('name')} ({role}) in group {user.get('group')} at {client.url}")


@train_app.command("local")
def train_local(
    config: Annotated[Path, typer.Argument(help="Training config (YAML).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON result.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Write an HTML training report (loss, calibration, tables).",
        metavar="FILE.html")] = None,
) -> None:
    """Train a model on this machine from CONFIG, without a server."""
    if not config.is_file():
        raise InputError(f"training config {str(config)!r} does not exist")
    # Imported here: torch takes seconds to import and no other command needs it.
    try:
        from plinth.train.cli import local
    except ModuleNotFoundError as exc:
        if exc.name not in ("plinth.train.cli", "plinth.train"):
            raise
        raise PlinthError(
            "this installation has no trainer (plinth.train.cli is missing)"
        ) from None
    raise typer.Exit(local(config, json_output, report))


def main() -> None:
    """Console-script entry point (``plinth``)."""
    try:
        app(prog_name="plinth")
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
