"""``plinth deploy ...``: models served under quota (create, list, get, scale, delete)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError

app = typer.Typer(help="Deployments: serve a registered model on replicas under quota "
                       "(create, list, get, scale, traffic, delete).",
                  no_args_is_help=True)

_HEAD = ["NAME", "MODEL", "VERSION", "READY", "STATE", "GROUP", "CREATED"]


def _model(d: dict[str, Any]) -> str:
    return f"{d['model']}@{d['alias']}" if d.get("alias") else f"{d['model']}@{d['version']}"


def _row(d: dict[str, Any]) -> list[str]:
    return [out.escape(d["name"]), out.escape(_model(d)), str(d.get("version") or "-"),
            f"{d['ready_replicas']}/{d['replicas']}", out.escape(d["state"]),
            out.escape(d["group"]), out.fmt_time(d.get("created_at"))]


def _show(d: dict[str, Any], output: out.Output) -> None:
    if output is out.Output.json:
        out.print_json(d)
        return
    res = d["resources"]
    out.print_fields([
        ("name", d["name"]), ("id", d["id"]), ("model", _model(d)),
        ("version", d.get("version")), ("state", d["state"]), ("reason", d["reason"]),
        ("replicas", f"{d['ready_replicas']}/{d['replicas']} running"),
        ("per replica", f"cpu={res['cpu']:g} memory={res['memory']}Mi gpu={res['gpu']}"),
        ("canary", "-" if not d.get("canary") else
         f"{d['model']}@{d['canary']['alias'] or d['canary']['version']} (version "
         f"{d['canary']['version']}) x{d['canary']['replicas']}, "
         f"{d['canary']['percent']:g}% of requests"),
        ("group", d["group"]), ("created", out.fmt_time(d.get("created_at"))),
        ("endpoint", d["endpoint"]),
    ])
    out.print_table(["REPLICA", "STATE", "ADDRESS", "STARTED", "EXIT"], [
        [f"{r['role']}-{r['replica']}", out.escape(r["state"]), f"{r['host']}:{r['port']}",
         out.fmt_time(r.get("started_at")),
         "-" if r.get("exit_code") is None else str(r["exit_code"])]
        for r in d.get("replica_status") or []])


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Deployment name (its endpoint's address).")],
    model: Annotated[str, typer.Option("--model", help="NAME@ALIAS (followed: alias moves "
                                       "swap the version) or NAME@VERSION (pinned).")],
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Replicas.")] = 1,
    cpu: Annotated[float | None, typer.Option("--cpu", help="Cores per replica (default 1)."
                                              )] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Memory per replica, e.g. "
                                               "512Mi, 2Gi (default 512Mi).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Admins: the group it runs "
                                              "in.")] = None,
    canary: Annotated[str | None, typer.Option("--canary", help="Another version of the "
                                               "same model (NAME@ALIAS or NAME@VERSION) on "
                                               "replicas of its own.")] = None,
    canary_percent: Annotated[float | None, typer.Option(
        "--canary-percent", min=0, max=100, help="Its share of the requests (default 10).")
    ] = None,
    canary_replicas: Annotated[int | None, typer.Option(
        "--canary-replicas", min=1, help="Its replicas (default 1).")] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Deploy a registered model: a workload scheduled under your group's quota."""
    if canary is None and (canary_percent is not None or canary_replicas is not None):
        raise InputError("--canary-percent and --canary-replicas go with --canary")
    options = {k: v for k, v in (("canary", canary), ("canary_percent", canary_percent),
                                 ("canary_replicas", canary_replicas)) if v is not None}
    d = get_client(ctx).deployments.create(name, model, replicas=replicas, cpu=cpu,
                                           memory=memory, group=group, **options)
    if output is out.Output.json:
        out.print_json(d)
        return
    out.note(f"Deployment {d['name']} of {_model(d)} (version {d['version']}) is "
             f"{d['state']}; predictions: POST {d['endpoint']}")
    out.print_line(d["name"])


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Deleted and failed ones too.")] = False,
    output: OutputOption = out.Output.table,
) -> None:
    """List deployments (live ones unless --all), newest first."""
    ds = get_client(ctx).deployments.list(all=all_)
    if output is out.Output.json:
        out.print_json(ds)
        return
    out.print_table(_HEAD, [_row(d) for d in ds])


@app.command()
def get(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Deployment name.")],
        output: OutputOption = out.Output.table) -> None:
    """Show a deployment and its replicas."""
    _show(get_client(ctx).deployments.get(name), output)


@app.command()
def scale(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    replicas: Annotated[int, typer.Argument(min=1, help="The new number of replicas.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Change the number of replicas (admitted again under the quota; replicas restart)."""
    _show(get_client(ctx).deployments.scale(name, replicas), output)


@app.command()
def traffic(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    canary_percent: Annotated[float, typer.Option("--canary-percent", min=0, max=100,
                                                  help="The canary's share of requests.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Set the share of requests the deployment's canary gets (at once, no restart)."""
    _show(get_client(ctx).deployments.traffic(name, canary_percent), output)


@app.command()
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Deployment name.")],
           output: OutputOption = out.Output.table) -> None:
    """Delete a deployment: its replicas stop and its resources return to the quota."""
    d = get_client(ctx).deployments.delete(name)
    if output is out.Output.json:
        out.print_json(d)
        return
    out.print_line(f"{d['name']} {d['state']}")
