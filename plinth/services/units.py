"""Parsing of the quantities users write: memory sizes and durations.

Pure functions, no I/O. Sizes are read by ``plinth.units`` (one parser for memory in
MiB and byte caps, shared with the executors and the configuration) and re-exported
here; durations are normalised to seconds (float) and accept plain numbers (seconds)
or strings with units.
"""

from __future__ import annotations

import math
import re

from plinth.units import (
    MAX_MEMORY_MIB,
    MAX_SIZE_BYTES,
    MEMORY_UNITS,
    SIZE_PATTERN,
    SIZE_UNITS,
    parse_memory_mib,
    parse_size_bytes,
)

__all__ = [
    "DURATION_UNITS",
    "MAX_MEMORY_MIB",
    "MAX_SIZE_BYTES",
    "MEMORY_UNITS",
    "SIZE_PATTERN",
    "SIZE_UNITS",
    "parse_duration_s",
    "parse_memory_mib",
    "parse_size_bytes",
]

DURATION_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")

# Upper bound keeps every stored duration a sane float.
MAX_DURATION_S = 10 * 365 * 86400.0


def parse_duration_s(value: float | str, *, allow_zero: bool = False) -> float:
    """Return `value` in seconds. Numbers are seconds; strings may end in s, m, h or d.

    Zero is refused unless `allow_zero` (a delay may be zero; a runtime may not).
    Raises ValueError with the accepted forms when the value cannot be read.
    """
    if isinstance(value, bool):
        raise ValueError("duration must be seconds or a string like '90s', '30m', '2h', '1d'")  # noqa: TRY004
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DUR_RE.match(value)
        if not m:
            raise ValueError(
                f"duration {value!r} is not understood; use seconds or a string like "
                "'90s', '30m', '2h', '1d'"
            )
        seconds = float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError("duration must be seconds or a string like '90s', '30m', '2h', '1d'")  # noqa: TRY004
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        qualifier = "non-negative" if allow_zero else "positive"
        raise ValueError(f"duration must be a {qualifier}, finite number of seconds")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration must be at most {int(MAX_DURATION_S)} seconds (10 years)")
    return seconds
