"""Parsing of the quantities users write: memory sizes and durations.

Pure functions, no I/O. Memory is normalised to whole MiB, durations to seconds
(float). Both accept plain numbers (already in MiB / seconds) or strings with units.
"""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_UNITS", "MEMORY_UNITS", "parse_duration_s", "parse_memory_mib"]

# Binary (Ki/Mi/Gi/Ti) and decimal (K/M/G/T) suffixes, as Kubernetes writes them; value in MiB.
MEMORY_UNITS: dict[str, float] = {
    "Ki": 1 / 1024,
    "Mi": 1.0,
    "Gi": 1024.0,
    "Ti": 1024.0 * 1024,
    "K": 1e3 / 2**20,
    "M": 1e6 / 2**20,
    "G": 1e9 / 2**20,
    "T": 1e12 / 2**20,
}
DURATION_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")

# Upper bounds keep every stored number inside a 64-bit integer / sane float.
MAX_MEMORY_MIB = 2**40
MAX_DURATION_S = 10 * 365 * 86400.0


def parse_memory_mib(value: float | str) -> int:
    """Return `value` as whole MiB (rounded up). Numbers are MiB; strings may carry a unit.

    Raises ValueError with the accepted forms when the value cannot be read.
    """
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - Pydantic turns ValueError into a 422
            "memory must be a number of MiB or a string like '512Mi', '4Gi', '1G'"
        )
    if isinstance(value, (int, float)):
        mib = float(value)
    elif isinstance(value, str):
        m = _MEM_RE.match(value)
        if not m:
            raise ValueError(
                f"memory {value!r} is not understood; use MiB as a number or a string like "
                f"'512Mi', '4Gi', '1G' (units: {', '.join(MEMORY_UNITS)})"
            )
        mib = float(m.group(1)) * MEMORY_UNITS[m.group(2) or "Mi"]
    else:
        raise ValueError("memory must be a number of MiB or a string like '512Mi'")  # noqa: TRY004
    if not math.isfinite(mib) or mib < 0:
        raise ValueError("memory must be a finite, non-negative size")
    if mib > MAX_MEMORY_MIB:
        raise ValueError(f"memory must be at most {MAX_MEMORY_MIB} MiB")
    return math.ceil(mib)


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
