"""``plinth data build|stats``: training samples from raw logs, and their statistics.

``build`` runs in this process (``--submit``: as a platform job under the group's quota);
``stats`` reads a built dataset. Polars and the build are imported inside the commands,
so the rest of the CLI starts fast.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from plinth.cli import _output as out
from plinth.cli._context import OutputOption, get_client
from plinth.cli._parse import InputError
from plinth.client import PlinthError, ValidationError

app = typer.Typer(help="Datasets: build samples from raw logs, and their statistics.",
                  no_args_is_help=True)


class Engine(enum.StrEnum):
    """Where a build runs: Polars in this process, or Ray Data (plinth.data.ray_build)."""

    polars = "polars"
    ray = "ray"


def _load(spec_file: Path) -> Any:
    from plinth.data.spec import SpecError, load_spec

    if not spec_file.is_file():
        raise InputError(f"build spec {str(spec_file)!r} does not exist")
    try:
        return load_spec(spec_file)
    except SpecError as e:
        raise InputError(f"{spec_file}: {e}") from None


def build_job_spec(spec: Any, *, name: str, cpu: float, memory: str,
                   max_runtime: str | None, engine: str = "polars",
                   ray_address: str | None = None) -> dict[str, Any]:
    """The platform job that runs ``python -m plinth.data.build`` on a resolved spec.

    The spec travels in ``params.spec`` as JSON with absolute paths: the job reads the
    same files this machine sees (the local executor; on a cluster, shared storage).
    """
    job: dict[str, Any] = {
        "name": name,
        "params": {"spec": json.dumps(spec.to_dict())},
        "roles": {"main": {"replicas": 1, "resources": {"cpu": cpu, "memory": memory},
                           "command": ["python", "-m", "plinth.data.build", "--params",
                                       "--json"]}},
    }
    if engine != "polars":
        job["roles"]["main"]["command"] += ["--engine", engine]
    if ray_address:
        job["roles"]["main"]["command"] += ["--ray-address", ray_address]
    if max_runtime:
        job["max_runtime"] = max_runtime
    return job


@app.command("build")
def build_command(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="Build spec (YAML).")],
    submit: Annotated[bool, typer.Option("--submit", help="Run as a platform job.")] = False,
    name: Annotated[str, typer.Option("--name", help="Job name with --submit.")] = "data-build",
    cpu: Annotated[float, typer.Option("--cpu", help="Cores for the job.")] = 2.0,
    memory: Annotated[str, typer.Option("--memory", help="Memory for the job.")] = "4Gi",
    max_runtime: Annotated[
        str | None, typer.Option("--max-runtime", help="Limit for the job, e.g. 2h.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="With --submit: wait for the end.")] = False,
    engine: Annotated[Engine, typer.Option(
        "--engine", help="polars (this process) or ray (Ray Data; same output).")] = Engine.polars,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", metavar="HOST:PORT",
        help="With --engine ray: a running cluster (default: a local Ray for the build).")
    ] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Build samples (one row per impression) from SPEC; a rerun skips what is up to date."""
    if ray_address and engine is not Engine.ray:
        raise InputError("--ray-address needs --engine ray")
    spec = _load(spec_file)
    if submit:
        client = get_client(ctx)
        try:
            job = dict(client.jobs.submit(build_job_spec(
                spec, name=name, cpu=cpu, memory=memory, max_runtime=max_runtime,
                engine=engine.value, ray_address=ray_address)))
        except ValidationError as exc:
            raise InputError(f"the server rejected the build job: {exc.message}") from None
        if wait:
            job = dict(client.jobs.wait(str(job["id"])))
        if output is out.Output.json:
            out.print_json(job)
        else:
            out.print_line(f"{job['id']} {job.get('state')}")
        if wait and job.get("state") != "succeeded":
            raise typer.Exit(1)
        return
    import polars as pl

    from plinth.data.build import build
    from plinth.data.ray_build import RayBuildError, RayConnectError
    from plinth.data.reader import DataError
    from plinth.data.schema import SchemaError

    try:
        result = build(spec, engine=engine.value, ray_address=ray_address)
    except (DataError, SchemaError, RayConnectError) as e:
        raise InputError(str(e)) from None
    except RayBuildError as e:
        raise PlinthError(f"{e}; nothing was written") from None
    except OSError as e:
        raise PlinthError(f"cannot write the dataset: {e}") from None
    except pl.exceptions.PolarsError as e:  # nothing was committed; say what failed
        raise PlinthError(f"the build failed and wrote nothing: {e}") from None
    if output is out.Output.json:
        out.print_json(result.to_dict())
    elif result.days_built:
        out.print_line(f"built {len(result.days_built)} day(s), {result.rows_written:,} rows; "
                       f"{len(result.days_skipped)} day(s) up to date; {result.rows_total:,} "
                       f"rows in {result.output}")
    else:
        out.print_line(f"{result.output} is up to date ({result.rows_total:,} rows)")


@app.command("stats")
def stats_command(
    dataset: Annotated[Path, typer.Argument(help="A built dataset (or Parquet directory).")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report with plots.")
    ] = None,
    output: OutputOption = out.Output.table,
) -> None:
    """Per-field counts, distinct ids, frequencies, null rates, and label rates by day."""
    from plinth.data.reader import DataError
    from plinth.data.stats import dataset_stats, render_html

    if not dataset.exists():
        raise InputError(f"dataset {str(dataset)!r} does not exist")
    try:
        stats = dataset_stats(dataset)
    except DataError as e:
        raise InputError(str(e)) from None
    if html is not None:
        try:
            html.write_text(render_html(stats))
        except OSError as e:
            raise InputError(f"--html: cannot write {html}: {e.strerror}") from None
    if output is out.Output.json:
        out.print_json(stats)
        return
    rows = []
    for n, f in stats["fields"].items():
        ge = {p["k"]: p["ids"] for p in f.get("frequency", [])}
        rows.append([out.escape(n), f["kind"], f"{f['count']:,}", f"{f['null_rate']:.2%}",
                     f"{f['distinct']:,}" + ("" if f["distinct_exact"] else "~"),
                     str(ge.get(2, "")), str(ge.get(10, ""))])
    out.print_table(["FIELD", "KIND", "COUNT", "NULLS", "DISTINCT", "IDS>=2", "IDS>=10"], rows)
    for n, lab in stats["labels"].items():
        out.print_line(f"label {n}: rate {lab['rate']:.4%} over {len(lab['by_day'])} day(s)")
    if html is not None:
        out.note(f"Wrote {html}.")
