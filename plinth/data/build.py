"""``plinth data build SPEC``: raw logs -> one training sample per impression, by day.

For each impression day D the build takes the impressions of D, attributes label events
to them (:func:`plinth.data.join.attribute`: events in ``[D, D+1+max window)`` against
the impressions of that same span, so the last touch is found even across midnight),
joins user and item snapshots as of each impression (:func:`plinth.data.join.as_of`),
applies the schema's derived fields (:func:`plinth.data.transforms.apply_derived`, over
Arrow) and writes ``date=D/part-<fingerprint>.parquet``, sorted by
``(ts, request_id, item_id)``. Output columns: ``request_id, user_id, item_id, ts``, the
schema's feature columns, the labels, the weight (nulls -> 1.0).

Whole or nothing: inputs are checked before anything is written; new day files are
written as ``*.partial`` and renamed in only once all are done, then ``schema.yaml``,
then ``manifest.json`` (atomically) — the manifest is the commit point. A build that fails
removes what it wrote; one that is killed leaves ``_BUILDING`` and no new manifest.

Incremental: each day's fingerprint hashes the spec's logic (schema, column mappings,
TTLs) and the content hashes of the input files whose timestamps can reach that day
(impressions and events overlapping ``[D, D+1+max window)``, snapshots starting before
D+1 and, with a TTL, not ending before D-ttl). A day whose fingerprint is in the manifest
is not rebuilt; a rerun over the same inputs writes nothing at all. Quantile buckets are
learned on the first build and reused while the declared schema stays the same.

CLI (also run as a platform job): ``python -m plinth.data.build SPEC [--json] [--engine
polars|ray] [--ray-address HOST:PORT]`` or
``python -m plinth.data.build --params`` (the spec in ``$PLINTH_PARAMS`` key ``spec``).
Exit codes: 0 built (or nothing to do), 2 bad spec or input, 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from plinth.data import manifest as mf
from plinth.data.join import ROW, as_of, attribute, match_keys
from plinth.data.reader import DataError
from plinth.data.schema import Schema, SchemaError
from plinth.data.sources import RawInput, open_input
from plinth.data.spec import BuildSpec, SpecError, load_spec

__all__ = ["BuildResult", "build", "main"]

KEY_COLUMNS = ("request_id", "user_id", "item_id", "ts")
ENGINES = ("polars", "ray")
_DAY = dt.timedelta(days=1)


@dataclass
class BuildResult:
    """What a build did: days built and skipped, rows and files written."""

    output: Path
    days_built: list[str] = field(default_factory=list)
    days_skipped: list[str] = field(default_factory=list)
    rows_written: int = 0
    rows_total: int = 0
    files_written: list[str] = field(default_factory=list)
    schema_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "days_built": self.days_built,
                "days_skipped": self.days_skipped, "rows_written": self.rows_written,
                "rows": self.rows_total, "files_written": self.files_written,
                "schema_hash": self.schema_hash}


@dataclass(frozen=True)
class _Plan:
    """The checked inputs and where each output column comes from."""

    spec: BuildSpec
    inputs: dict[str, RawInput]
    columns_from: dict[str, list[str]]  # input name -> its fields in the output
    max_window: dt.timedelta


# --- planning: check inputs, place columns -------------------------------------------------

def _required_event_columns(schema: Schema) -> tuple[str, ...]:
    need = {"event", "ts"}
    for label in schema.labels:
        need |= {"user_id", "item_id"} if label.match.value == "user_item" else {"request_id"}
    return tuple(sorted(need))


def _schema_sources(schema: Schema) -> list[str]:
    """Raw columns the schema needs from the inputs (derived fields' sources included)."""
    derived = {f.name for f in schema.derived}
    cols: list[str] = []
    for f in schema.categorical:
        cols.extend(c for c in f.sources if c not in derived)
    cols.extend(schema.numeric_names)
    if schema.weight:
        cols.append(schema.weight)
    return list(dict.fromkeys(c for c in cols if c not in KEY_COLUMNS))


def plan(spec: BuildSpec) -> _Plan:
    """Check every input and decide which input each schema column comes from."""
    inputs = {"impressions": open_input(spec.impressions),
              "events": open_input(spec.events, _required_event_columns(spec.schema))}
    for snap in (spec.user_features, spec.item_features):
        if snap is not None:
            inputs[snap.name] = open_input(snap)
    columns_from: dict[str, list[str]] = {name: [] for name in inputs if name != "events"}
    for col in _schema_sources(spec.schema):
        holders = [n for n in columns_from if col in inputs[n].columns]
        if not holders:
            have = {n: [c for c in inputs[n].columns if c not in KEY_COLUMNS] for n in columns_from}
            raise DataError(f"schema column {col!r} is in no input; the inputs have {have}")
        if len(holders) > 1:
            raise DataError(f"schema column {col!r} is in {holders}; keep it in one input "
                            "(rename it in the others' files)")
        columns_from[holders[0]].append(col)
    windows = [x.window_s for x in spec.schema.labels]
    return _Plan(spec, inputs, columns_from, dt.timedelta(seconds=max(windows)))


def _day_span(p: _Plan, day: dt.date) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    start = dt.datetime(day.year, day.month, day.day)
    return start, start + _DAY, start + _DAY + p.max_window


def _day_fingerprint(p: _Plan, day: dt.date, logic: str) -> str:
    """Hash of the logic and of the input files whose rows can reach ``day``'s samples."""
    start, end, horizon = _day_span(p, day)
    parts = [logic, day.isoformat()]
    for name, inp in sorted(p.inputs.items()):
        ttl = inp.spec.ttl_s
        for f in inp.files:
            if name in ("impressions", "events"):
                reaches = f.overlaps(start, horizon)
            else:  # a snapshot reaches the day if it starts before its end (and lives long enough)
                reaches = f.first is not None and f.first < end and (
                    ttl is None or (f.last is not None and f.last >= start - dt.timedelta(seconds=ttl)))
            if reaches:
                parts.append(f"{name}:{f.sha256}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _impression_days(p: _Plan) -> list[dt.date]:
    days = (p.inputs["impressions"].scan(["ts"]).select(pl.col("ts").dt.date().unique())
            .collect().to_series().drop_nulls().sort().to_list())
    spec = p.spec
    return [d for d in days if (spec.first_day is None or d >= spec.first_day)
            and (spec.last_day is None or d <= spec.last_day)]


def _learn(p: _Plan, schema: Schema) -> Schema:
    """Fill in quantile boundaries from the input that holds each source column."""
    from plinth.data.transforms import learn_boundaries

    learned = {}
    for f in schema.unresolved:
        holder = next(n for n, cols in p.columns_from.items() if f.bucketize in cols)
        values = p.inputs[holder].scan([f.bucketize]).collect().to_arrow().column(0)
        learned[f.name] = learn_boundaries(values, f.quantiles or 2)
        if not learned[f.name]:
            raise DataError(f"schema field {f.name!r}: {f.bucketize!r} has no finite values "
                            "to learn quantile boundaries from")
    return schema.with_boundaries(learned)


# --- one day ------------------------------------------------------------------------------

def _day_frame(p: _Plan, day: dt.date) -> pl.LazyFrame:
    """The lazy plan of one day's samples (before derived fields)."""
    start, end, horizon = _day_span(p, day)
    schema = p.spec.schema
    imp_cols = list(dict.fromkeys([*KEY_COLUMNS, *p.columns_from["impressions"]]))
    window = (p.inputs["impressions"].scan(imp_cols)
              .filter((pl.col("ts") >= start) & (pl.col("ts") < horizon))
              .sort("ts", "request_id", "item_id", maintain_order=True)
              .with_row_index(ROW))
    today = window.filter(pl.col("ts") < end)
    ev_cols = p.inputs["events"].columns
    keys = sorted({k for lab in schema.labels for k in match_keys(lab, ev_cols)})
    events = (p.inputs["events"].scan(["event", "ts", *keys])
              .filter((pl.col("ts") >= start) & (pl.col("ts") < horizon)))
    samples = attribute(today, window, events, schema.labels, ev_cols)
    for name, key in (("user_features", "user_id"), ("item_features", "item_id")):
        fields = p.columns_from.get(name)
        if fields:
            inp = p.inputs[name]
            snaps = inp.scan([key, "ts", *fields]).filter(pl.col("ts") < end)
            samples = as_of(samples, snaps, key, inp.spec.ttl_s)
    out_cols = [*KEY_COLUMNS, *(c for c in _schema_sources(schema) if c != schema.weight),
                *schema.label_names]
    exprs = [pl.col(c) for c in dict.fromkeys(out_cols)]
    if schema.weight:
        exprs.append(pl.col(schema.weight).cast(pl.Float32).fill_null(1.0))
    return samples.select(exprs)


def _join_day(p: _Plan, day: dt.date) -> pl.DataFrame:
    """One day's joined samples (before derived fields), weights checked."""
    df = _day_frame(p, day).collect(engine="streaming")
    schema = p.spec.schema
    if schema.weight:
        w = df[schema.weight]
        if (w < 0).any() or not w.is_finite().all():
            raise DataError(f"weight column {schema.weight!r} has negative or non-finite values "
                            f"on {day}; weights must be finite and >= 0")
    return df


def _derive(table: pa.Table, schema: Schema) -> pa.Table:
    """The schema's derived fields over Arrow (row by row: any batching gives the same)."""
    if not schema.derived:
        return table
    from plinth.data.transforms import apply_derived  # crosses hash with numba (~200 MB)

    return apply_derived(table, schema)


def _write_table(table: pa.Table, path: Path) -> None:
    """Write one day's final table (derived fields applied) to ``path``."""
    table = table.cast(_arrow_schema(table.schema))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=128 * 1024)


def _label_rates(labels: pl.DataFrame, schema: Schema) -> dict[str, float]:
    return {x: float(labels[x].mean() or 0.0) for x in schema.label_names}


def _write_day(p: _Plan, schema: Schema, day: dt.date, path: Path) -> tuple[int, dict[str, float]]:
    """Build one day into ``path`` (a ``.partial`` file); return rows and label rates."""
    df = _join_day(p, day)
    _write_table(_derive(df.to_arrow(), schema), path)
    return df.height, _label_rates(df, schema)


def _arrow_schema(s: pa.Schema) -> pa.Schema:
    """Plain strings instead of Polars' string views, so every Parquet reader agrees."""
    return pa.schema([pa.field(f.name, pa.large_string() if pa.types.is_string_view(f.type)
                               else f.type) for f in s])


# --- the build ----------------------------------------------------------------------------

def build(spec: BuildSpec, *, progress: bool | None = None,
          after_day: Callable[[str], None] | None = None, engine: str = "polars",
          ray_address: str | None = None) -> BuildResult:
    """Build (or bring up to date) the dataset of ``spec``; see the module docstring.

    ``engine``: ``polars`` (this process) or ``ray`` (Ray Data, :mod:`plinth.data.ray_build`:
    the same output; ``ray_address`` joins a running cluster, else a local Ray is started
    for the build and stopped after it). ``after_day`` is called with each day written
    (before the commit): tests use it to interrupt a build half-way.
    """
    if engine not in ENGINES:
        raise DataError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    p = plan(spec)
    out = spec.output
    _refuse_concurrent_build(out)
    old = mf.read_manifest(out) if out.is_dir() else None
    declared = spec.schema.fingerprint()
    logic = spec.logic_fingerprint()
    if old is not None and old.get("logic_fingerprint") != logic:
        old = None  # another schema or mapping: no old day may stay beside the new ones
    schema = spec.schema
    if old is not None:
        schema = Schema.from_yaml(out / "schema.yaml")  # reuse learned boundaries
    if schema.unresolved:
        schema = _learn(p, schema)
    result = BuildResult(out, schema_hash=schema.fingerprint())
    old_days = dict(old["days"]) if old else {}
    todo: list[tuple[dt.date, str]] = []
    for day in _impression_days(p):
        fp = _day_fingerprint(p, day, logic)
        if old_days.get(day.isoformat(), {}).get("fingerprint") == fp:
            result.days_skipped.append(day.isoformat())
        else:
            todo.append((day, fp))
    if not todo:
        result.rows_total = int(old["rows"]) if old else 0
        return result

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _clear_partials(out)
    (out / mf.BUILDING_MARKER).write_text(f"pid {os.getpid()}\n")
    new_days: dict[str, dict[str, Any]] = {}
    fingerprints = {day.isoformat(): fp for day, fp in todo}
    partials = [out / (day_file(day, fp) + ".partial") for day, fp in todo]
    written = _engine_days(engine, p, schema, todo, progress, ray_address)
    try:
        for day, rows, rates in written:
            new_days[day] = {"files": [day_file(dt.date.fromisoformat(day), fingerprints[day])],
                             "rows": rows, "label_rates": rates,
                             "fingerprint": fingerprints[day]}
            if after_day is not None:
                after_day(day)
    except BaseException:
        written.close()  # stops the engine (Ray: its tasks) before the clean-up below
        for f in partials:
            f.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            (out / mf.BUILDING_MARKER).unlink(missing_ok=True)
        raise
    for f in partials:
        os.replace(f, f.with_suffix(""))  # drop ".partial"
    days = {**old_days, **new_days}
    manifest = _manifest(p, schema, declared, days) | {"logic_fingerprint": logic}
    schema.to_yaml(out / "schema.yaml")
    mf.write_atomic(out / mf.MANIFEST, json.dumps(manifest, indent=1).encode())
    (out / mf.BUILDING_MARKER).unlink(missing_ok=True)
    _remove_unlisted(out, manifest)
    result.days_built = sorted(new_days)
    result.rows_written = sum(d["rows"] for d in new_days.values())
    result.rows_total = manifest["rows"]
    result.files_written = [f for d in new_days.values() for f in d["files"]]
    return result


def day_file(day: dt.date, fingerprint: str) -> str:
    """A day's file, relative to the dataset: ``date=D/part-<fingerprint[:16]>.parquet``."""
    return f"date={day.isoformat()}/part-{fingerprint[:16]}.parquet"


def _engine_days(engine: str, p: _Plan, schema: Schema, todo: list[tuple[dt.date, str]],
                 progress: bool | None, ray_address: str | None
                 ) -> Generator[tuple[str, int, dict[str, float]], None, None]:
    """Write each day of ``todo`` as ``<day file>.partial`` under the output; yield
    ``(day, rows, label rates)`` per day written."""
    if engine == "ray":
        from plinth.data.ray_build import build_days

        return build_days(p, schema, todo, progress=progress, address=ray_address)
    return _polars_days(p, schema, todo, progress)


def _polars_days(p: _Plan, schema: Schema, todo: list[tuple[dt.date, str]],
                 progress: bool | None) -> Generator[tuple[str, int, dict[str, float]], None, None]:
    for day, fp in _progress(todo, progress):
        rows, rates = _write_day(p, schema, day, p.spec.output / (day_file(day, fp) + ".partial"))
        yield day.isoformat(), rows, rates


def _manifest(p: _Plan, schema: Schema, declared: str, days: dict[str, Any]) -> dict[str, Any]:
    rows = sum(d["rows"] for d in days.values())
    rates = {x: (sum(d["label_rates"].get(x, 0.0) * d["rows"] for d in days.values()) / rows
                 if rows else 0.0) for x in schema.label_names}
    return {
        "format": mf.FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_hash": schema.fingerprint(),
        "declared_schema_hash": declared,
        "rows": rows,
        "label_rates": rates,
        "inputs": {n: [f.to_dict() for f in inp.files] for n, inp in sorted(p.inputs.items())},
        "days": {d: days[d] for d in sorted(days)},
    }


def _refuse_concurrent_build(out: Path) -> None:
    """Refuse to start while another live process builds into ``out``."""
    marker = out / mf.BUILDING_MARKER
    try:
        pid = int(marker.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # a killed build's marker: this build takes over
    except PermissionError:
        pass
    raise DataError(f"another build (pid {pid}) is writing {out}; wait for it to finish")


def _clear_partials(out: Path) -> None:
    for f in out.glob("date=*/*.partial"):
        f.unlink()


def _remove_unlisted(out: Path, manifest: dict[str, Any]) -> None:
    """Delete day files a new manifest replaced (after the commit, so never needed)."""
    listed = {out / f for d in manifest["days"].values() for f in d["files"]}
    for f in out.glob("date=*/*.parquet"):
        if f not in listed:
            f.unlink()
    for d in out.glob("date=*"):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def _progress(items: Sequence[tuple[dt.date, str]], show: bool | None
              ) -> Any:
    """Iterate ``items`` with a rich progress bar on a terminal (or when ``show``)."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("building {task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(str(items[0][0]), total=len(items))
        for item in items:
            bar.update(task, description=str(item[0]))
            yield item
            bar.advance(task)


# --- entry point ----------------------------------------------------------------------------

def run(source: str | Path | dict[str, Any], *, json_output: bool = False,
        progress: bool | None = None, engine: str = "polars",
        ray_address: str | None = None) -> int:
    """Build from a spec file or mapping, print the outcome, return the exit code."""
    from plinth.data.ray_build import RayBuildError, RayConnectError

    try:
        spec = load_spec(source)
        result = build(spec, progress=progress, engine=engine, ray_address=ray_address)
    except (SpecError, SchemaError, DataError, RayConnectError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RayBuildError as e:
        print(f"error: {e}; nothing was written", file=sys.stderr)
        return 1
    except pl.exceptions.PolarsError as e:
        print(f"error: the build failed and wrote nothing: {e}", file=sys.stderr)
        return 1
    if json_output:
        print(json.dumps(result.to_dict()), flush=True)
    elif result.days_built:
        print(f"built {len(result.days_built)} day(s), {result.rows_written} rows "
              f"({len(result.days_skipped)} day(s) up to date); {result.rows_total} rows in "
              f"{result.output}", flush=True)
    else:
        print(f"{result.output} is up to date ({result.rows_total} rows)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plinth.data.build",
                                 description="Build training samples from raw logs.")
    ap.add_argument("spec", nargs="?", type=Path, help="build spec (YAML)")
    ap.add_argument("--params", action="store_true",
                    help="read the spec from $PLINTH_PARAMS key `spec` (platform jobs)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    ap.add_argument("--engine", choices=ENGINES, default="polars",
                    help="polars (this process) or ray (Ray Data; the same output)")
    ap.add_argument("--ray-address", metavar="HOST:PORT",
                    help="with --engine ray: a running cluster (default: a local Ray)")
    a = ap.parse_args(argv)
    if a.params:
        try:
            source = json.loads(os.environ.get("PLINTH_PARAMS", ""))["spec"]
            if isinstance(source, str):  # the CLI sends it as a JSON string
                source = json.loads(source)
        except (ValueError, KeyError, TypeError):
            print("error: $PLINTH_PARAMS must be JSON with a `spec` mapping", file=sys.stderr)
            return 2
    elif a.spec is None:
        ap.error("give a SPEC file or --params")
    else:
        source = a.spec
    return run(source, json_output=a.json, engine=a.engine, ray_address=a.ray_address)


if __name__ == "__main__":
    sys.exit(main())
