"""Rendering for the CLI: JSON for scripts (``-o json``), rich tables for people.

Results go to stdout; notes, progress and errors go to stderr, so that
``-o json`` output can always be piped into ``jq``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from rich.console import Console
from rich.table import Table


class Output(str, Enum):
    """The ``-o/--output`` choices."""

    table = "table"
    json = "json"


def _console(stream: Any) -> Console:
    # Piped output would otherwise be cut at 80 columns; a table line is better long than cut.
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def stdout() -> Console:
    return _console(sys.stdout)


def stderr() -> Console:
    return _console(sys.stderr)


def note(message: str) -> None:
    """A progress note for people, on stderr (never mixed into results)."""
    stderr().print(message, markup=False, style="dim")


def error(message: str) -> None:
    """``Error: ...`` on stderr."""
    sys.stdout.flush()
    print(f"Error: {message}", file=sys.stderr, flush=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_line(text: str) -> None:
    """Write a line verbatim (no rich markup: log lines may contain brackets)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ---- formatting of values ---------------------------------------------------------------


def fmt_memory(mib: Any) -> str:
    """MiB as the shortest exact unit: ``32768`` -> ``32Gi``, ``512`` -> ``512Mi``."""
    if not isinstance(mib, (int, float)):
        return str(mib)
    if mib and mib % (1024 * 1024) == 0:
        return f"{int(mib) // (1024 * 1024)}Ti"
    if mib and mib % 1024 == 0:
        return f"{int(mib) // 1024}Gi"
    return f"{mib:g}Mi"


def fmt_bytes(size: Any) -> str:
    """A byte count for people: ``1744`` -> ``1.7 KiB``."""
    if not isinstance(size, (int, float)):
        return str(size)
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def fmt_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def fmt_resources(res: Any) -> str:
    """``{"cpu": 8, "memory": 32768, "gpu": 2}`` -> ``cpu=8 memory=32Gi gpu=2``; None -> ``-``."""
    if not res:
        return "-"
    if not isinstance(res, dict):
        return str(res)
    parts = []
    for key in ("cpu", "memory", "gpu"):
        if key in res and res[key] is not None:
            value = fmt_memory(res[key]) if key == "memory" else fmt_number(res[key])
            parts.append(f"{key}={value}")
    parts += [f"{k}={v}" for k, v in res.items() if k not in ("cpu", "memory", "gpu")]
    return " ".join(parts) or "-"


def fmt_limit(res: Any, none: str = "none") -> str:
    """A cap or limit as the scheduler applies it: every resource, ``no cap`` for those
    left out (null); `none` when there is no cap at all."""
    if res is None:
        return none
    if not isinstance(res, dict):
        return str(res)
    parts = []
    for key in ("cpu", "memory", "gpu"):
        v = res.get(key)
        if v is None:
            parts.append(f"{key}=no cap")
        else:
            parts.append(f"{key}={fmt_memory(v) if key == 'memory' else fmt_number(v)}")
    return " ".join(parts)


def fmt_time(value: Any) -> str:
    """An ISO-8601 time shortened to ``YYYY-MM-DD HH:MM:SS`` (UTC as the server gives it)."""
    if not value:
        return "-"
    text = str(value).replace("T", " ")
    return text[:19]


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-" if seconds is None else str(seconds)
    seconds = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_STATE_STYLE = {
    "succeeded": "green",
    "running": "cyan",
    "admitted": "cyan",
    "pending": "yellow",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "magenta",
}


def styled_state(state: Any) -> str:
    text = str(state)
    style = _STATE_STYLE.get(text)
    return f"[{style}]{text}[/{style}]" if style else text


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """A table of already formatted cells (cells may carry rich markup; see :func:`escape`)."""
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(c) for c in row])
    stdout().print(table)


def print_fields(fields: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """A two-column ``field  value`` table for one resource."""
    table = Table(title=title, show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields:
        table.add_row(name, _cell(value))
    stdout().print(table)


def escape(value: Any) -> str:
    """Text from the server, made safe to put into a rich table cell."""
    from rich.markup import escape as _escape

    return _escape(_cell(value))
