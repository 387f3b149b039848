"""The ``ray`` engine of ``plinth data build``: the same days, computed through Ray Data.

The output equals the Polars engine's (same files, rows, order, values, Arrow schema and
manifest) because both run the same code; only where it runs differs::

    days to build ──▶ map_batches(join)    one Ray task per day: the day's Polars lazy plan
    (one row each)     (batch_size=1)       (plinth.data.join: label attribution, as-of
                                            joins) collected in the worker -> Arrow rows
                                            + __day, __pos (row number in the day)
                  ──▶ map_batches(derive)   the schema's derived fields
                     (batch_format=          (plinth.data.transforms.apply_derived) over
                      "pyarrow")              Arrow batches: row by row, so any batching
                                              gives the same values
                  ──▶ this process          blocks come back in day order
                                            (preserve_order); a day's blocks are put
                                            together, sorted by __pos, written as the day's
                                            ``.partial`` file; label rates as in Polars

Days are the partitions. The joins need no shuffle: a day's samples depend only on the
inputs of ``[D, D+1+max window)`` (the build's incremental unit already), and the label
and feature joins key on different columns (request, user+item, user, item), so a key
partitioning would need a shuffle per join. One day is therefore joined in one task, as
big as the Polars engine's (memory is bounded by a day on both); days run in parallel
across the cluster. Files are written by this process, so the commit protocol
(``.partial``, rename, manifest last) is the Polars engine's, unchanged.

Without an address a local Ray is started on 127.0.0.1 (no dashboard, at most
:data:`LOCAL_MAX_CPUS` cores) and stopped after the build; with one the build connects
(workers need plinth installed and the inputs at the same paths). An already initialised
Ray (a test's, a notebook's) is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Self

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from plinth.data.reader import DataError
from plinth.data.schema import Schema, SchemaError
from plinth.ray_link import is_loopback, loopback_init, unreachable

if TYPE_CHECKING:
    from plinth.data.build import _Plan

__all__ = ["LOCAL_MAX_CPUS", "RayBuildError", "RayConnectError", "build_days", "ray_session"]

#: Cores a local Ray started for one build may use (never more than this machine has).
LOCAL_MAX_CPUS = 8
_DAY = "__day"
_POS = "__pos"


class RayBuildError(Exception):
    """The Ray engine failed for a reason other than the spec or the data."""


class RayConnectError(RayBuildError):
    """No Ray cluster at the given address (or a local one could not start)."""


# --- Ray: start or connect ---------------------------------------------------------------

def _probe(address: str) -> None:
    why = unreachable(address)
    if why is not None:
        raise RayConnectError(
            f"cannot connect to the Ray cluster at {address!r}: {why}. Start one "
            "with `ray start --head --port PORT` and give HOST:PORT, or leave out "
            "--ray-address to build on a local Ray")


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Ray connected for the block: the running one, ``address``'s, or a local one."""
    import ray

    if ray.is_initialized():
        yield
        return
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": False}
    if address:
        _probe(address)
        loopback = is_loopback(address.rpartition(":")[0])
        try:
            with loopback_init(loopback):
                ray.init(address=address, **common,
                         **({"_node_ip_address": "127.0.0.1"} if loopback else {}))
        except Exception as e:  # noqa: BLE001 - Ray raises several types for this
            raise RayConnectError(f"cannot connect to the Ray cluster at {address!r}: {e}"
                                  ) from None
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        try:
            # "local": always a new Ray of its own, never a cluster found on this machine
            # (RAY_ADDRESS, /tmp/ray/ray_current_cluster) that someone else started.
            with loopback_init(True):  # its processes listen on 127.0.0.1 only
                ray.init(address="local", num_cpus=max(1, min(cores or 1, LOCAL_MAX_CPUS)),
                         include_dashboard=False, _node_ip_address="127.0.0.1",
                         # the raylet's 30 s for its agents is too short on a busy machine
                         _system_config={"agent_register_timeout_ms": 180_000}, **common)
        except Exception as e:  # noqa: BLE001
            raise RayConnectError(f"cannot start a local Ray: {e}") from None
    try:
        yield
    finally:
        ray.shutdown()


# --- the stages (run in Ray workers) ---------------------------------------------------

def _join_days(batch: pa.Table, plan: _Plan) -> pa.Table:
    """Each day of ``batch`` joined by the Polars engine's code, tagged with day and row."""
    from plinth.data.build import _join_day

    tables = []
    for day in batch.column("day").to_pylist():
        table = _join_day(plan, dt.date.fromisoformat(day)).to_arrow()
        tables.append(table.append_column(_DAY, pa.array([day] * table.num_rows, pa.string()))
                      .append_column(_POS, pa.array(range(table.num_rows), pa.int64())))
    return pa.concat_tables(tables)


def _derive_batch(batch: pa.Table, schema: Schema) -> pa.Table:
    from plinth.data.build import _derive

    return _derive(batch, schema)


def _root_cause(e: BaseException) -> BaseException:
    """The user code's own exception inside Ray's wrappers (``RayTaskError.cause``)."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        nxt = getattr(e, "cause", None) or e.__cause__
        if nxt is None:
            break
        e = nxt
    return e


# --- the driver ----------------------------------------------------------------------------

def build_days(p: _Plan, schema: Schema, todo: list[tuple[dt.date, str]], *,
               progress: bool | None = None, address: str | None = None
               ) -> Generator[tuple[str, int, dict[str, float]], None, None]:
    """Write each day of ``todo`` as its ``.partial`` file; yield ``(day, rows, rates)``
    in day order. Closing the generator stops the pipeline (and a local Ray)."""
    from plinth.data.build import _label_rates, _write_table, day_file

    files = {day.isoformat(): p.spec.output / (day_file(day, fp) + ".partial") for day, fp in todo}
    with ray_session(address), _data_context(), _DayProgress(len(todo), progress) as bar:
        import ray.data

        ds = ray.data.from_items([{"day": d} for d in files], override_num_blocks=len(files))
        ds = ds.map_batches(_join_days, fn_kwargs={"plan": p}, batch_size=1,
                            batch_format="pyarrow")
        if schema.derived:
            ds = ds.map_batches(_derive_batch, fn_kwargs={"schema": schema},
                                batch_format="pyarrow", batch_size=64 * 1024)
        parts: list[pa.Table] = []

        def finish() -> tuple[str, int, dict[str, float]]:
            table = pa.concat_tables(parts)
            day = table.column(_DAY)[0].as_py()
            table = table.sort_by(_POS).drop_columns([_DAY, _POS])
            _write_table(table, files[day])
            rates = _label_rates(pl.from_arrow(table.select(schema.label_names)), schema)
            parts.clear()
            bar.done(day)
            return day, table.num_rows, rates

        try:
            for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                if block.num_rows == 0:
                    continue
                days = block.column(_DAY).unique().to_pylist()
                for day in days:  # a block holds one day unless Ray coalesced small ones
                    rows = block.filter(pc.equal(block.column(_DAY), day))
                    if parts and parts[0].column(_DAY)[0].as_py() != day:
                        yield finish()
                    parts.append(rows)
            if parts:
                yield finish()
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - map Ray's wrappers to the cause
            cause = _root_cause(e)
            if isinstance(cause, DataError | SchemaError | pl.exceptions.PolarsError | OSError):
                raise cause from None
            raise RayBuildError(f"the Ray build failed: {type(cause).__name__}: {cause}"
                                ) from None


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Ray Data's settings for the build, the caller's (a notebook's) restored after."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    log = logging.getLogger("ray.data")
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
             ctx.print_on_execution_start, ctx.raise_original_map_exception, log.level)
    ctx.execution_options.preserve_order = True  # days, and blocks in a day, in order
    ctx.enable_progress_bars = False  # ours counts days, as the Polars engine does
    ctx.print_on_execution_start = False
    ctx.raise_original_map_exception = True  # a DataError stays one (not UserCodeException)
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
         ctx.print_on_execution_start, ctx.raise_original_map_exception) = saved[:4]
        log.setLevel(saved[4])


class _DayProgress:
    """A rich progress bar over days as they finish (on a terminal, or when ``show``)."""

    def __init__(self, total: int, show: bool | None) -> None:
        self.total = total
        self.show = sys.stderr.isatty() if show is None else show
        self._bar: Any = None

    def __enter__(self) -> Self:
        if self.show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress("building {task.description}", BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("on ray", total=self.total)
        return self

    def done(self, day: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"on ray: {day} done", advance=1)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
