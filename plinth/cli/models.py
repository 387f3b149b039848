"""``plinth model ...``: the model registry (versions with lineage, aliases, history)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError

app = typer.Typer(help="Model registry: register, list, get, versions, alias, history.",
                  no_args_is_help=True)


def _metrics(lineage: dict[str, Any]) -> str:
    m = lineage.get("metrics") or {}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(m.items()) if k in ("auc", "logloss")) or "-"


def _source(lineage: dict[str, Any]) -> str:
    if lineage.get("job"):
        return f"job {lineage['job']}"
    src = lineage.get("source") or {}
    return f"upload sha256:{str(src.get('file'))[:12]}" if src.get("file") else "-"


def _version_rows(versions: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(v.get("version")), out.escape(",".join(v.get("aliases") or []) or "-"),
             out.escape(_source(v.get("lineage") or {})), _metrics(v.get("lineage") or {}),
             out.escape(v.get("created_by")), out.fmt_time(v.get("created_at"))]
            for v in versions]


_VERSION_HEAD = ["VERSION", "ALIASES", "SOURCE", "METRICS", "BY", "CREATED"]


@app.command()
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name (created on its first version).")],
    path: Annotated[str | None, typer.Argument(help="A local model package directory.")] = None,
    from_job: Annotated[str | None, typer.Option("--from-job", help="Take the package from "
                                                 "this job's working directory.")] = None,
    job_path: Annotated[str | None, typer.Option("--path", help="With --from-job: the "
                                                 "package's directory in it (default: model)."
                                                 )] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Register a package as the model's next version (copied, validated, immutable)."""
    if (path is None) == (from_job is None):
        raise InputError("give a package directory or --from-job ID (one of them)")
    if job_path is not None and from_job is None:
        raise InputError("--path goes with --from-job; for a local package give PATH")
    v = get_client(ctx).models.register(name, path, from_job=from_job, job_path=job_path)
    if output is out.Output.json:
        out.print_json(v)
        return
    out.note(f"Registered {name} version {v['version']} "
             f"(schema {v['lineage'].get('schema_hash', '')[:12]}).")
    out.print_line(f"{name}@{v['version']}")


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = out.Output.table) -> None:
    """List the models you may see."""
    models = get_client(ctx).models.list()
    if output is out.Output.json:
        out.print_json(models)
        return
    out.print_table(["NAME", "LATEST", "ALIASES", "CREATED"], [
        [out.escape(m["name"]), str(m.get("latest_version") or "-"),
         out.escape(" ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items())) or "-"),
         out.fmt_time(m.get("created_at"))] for m in models])


@app.command()
def get(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Model name.")],
        output: OutputOption = out.Output.table) -> None:
    """Show a model: its aliases and versions."""
    m = get_client(ctx).models.get(name)
    if output is out.Output.json:
        out.print_json(m)
        return
    out.print_fields([("name", m["name"]), ("created by", m.get("created_by")),
                      ("created", out.fmt_time(m.get("created_at"))),
                      ("aliases", " ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items()))
                       or "-")])
    out.print_table(_VERSION_HEAD, _version_rows(m.get("versions") or []))


@app.command()
def versions(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Model name.")],
             output: OutputOption = out.Output.table) -> None:
    """List a model's versions with their lineage."""
    vs = get_client(ctx).models.versions(name)
    if output is out.Output.json:
        out.print_json(vs)
        return
    out.print_table(_VERSION_HEAD, _version_rows(vs))


@app.command()
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS",
                                              help="Alias, e.g. production or canary.")],
    version: Annotated[int, typer.Argument(help="The version it should point at.")],
    output: OutputOption = out.Output.table,
) -> None:
    """Point an alias at a version (atomically); deployments following it swap."""
    a = get_client(ctx).models.alias(name, alias_name, version)
    if output is out.Output.json:
        out.print_json(a)
        return
    out.print_line(f"{name}@{a['alias']} -> version {a['version']}")


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Every move of the model's aliases, oldest first."""
    moves = get_client(ctx).models.history(name, alias_name)
    if output is out.Output.json:
        out.print_json(moves)
        return
    out.print_table(["ALIAS", "FROM", "TO", "BY", "TIME"], [
        [out.escape(m["alias"]), str(m.get("from_version") or "-"), str(m["to_version"]),
         out.escape(m.get("moved_by")), out.fmt_time(m.get("time"))] for m in moves])
