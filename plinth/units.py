"""Sizes users write — memory of a replica or a node, byte caps — read by one parser.

Pure functions, no I/O, no imports from the rest of Plinth, so every layer (the
services, the executors, the configuration, the CLI) can use it. ``plinth.services.units``
re-exports it beside the duration parser.

A size is a number or a string: digits (a decimal fraction allowed) and an optional
unit, binary ``Ki Mi Gi Ti`` (powers of 1024) or decimal ``k K M G T`` (powers of
1000), as Kubernetes writes quantities (``K`` is accepted as well as Kubernetes' ``k``).
Units are case-sensitive: ``1m``, ``4gi`` and ``4GB`` are refused, not guessed at.
What a bare number means depends on the quantity: bytes for byte caps
(:func:`parse_size_bytes`), MiB for memory (:func:`parse_memory_mib`). Arithmetic is
exact (``1.1Ki`` is 1126.4 bytes, not a float near it) and rounds up.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = [
    "MAX_MEMORY_MIB",
    "MAX_SIZE_BYTES",
    "MEMORY_UNITS",
    "SIZE_PATTERN",
    "SIZE_UNITS",
    "parse_memory_mib",
    "parse_size_bytes",
]

#: Bytes per unit: binary (Ki/Mi/Gi/Ti) and decimal (k/K/M/G/T) suffixes.
SIZE_UNITS: dict[str, int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}
#: MiB per unit (the same suffixes), for callers that show or compute memory in MiB.
MEMORY_UNITS: dict[str, float] = {unit: size / 2**20 for unit, size in SIZE_UNITS.items()}

# Upper bound: every stored size fits a signed 64-bit integer, even as bytes.
MAX_SIZE_BYTES = 2**60
MAX_MEMORY_MIB = MAX_SIZE_BYTES // 2**20

# At most 30 digits on each side of the point: more is never a size, and Fraction would
# refuse thousands of digits with a message that names neither the field nor the forms.
_NUMBER = r"\d{1,30}(?:\.\d{1,30})?"
_UNIT = "|".join(SIZE_UNITS)
_SIZE_RE = re.compile(rf"^\s*({_NUMBER})\s*({_UNIT})?\s*$")
#: The same syntax without surrounding blanks, for JSON schemas (``pattern``).
SIZE_PATTERN = rf"^{_NUMBER}(?:{_UNIT})?$"
_BARE = {"": "bytes", "Mi": "MiB"}  # how the messages name a bare number


def parse_size_bytes(value: float | str, *, what: str = "size", bare_unit: str = "") -> int:
    """Return `value` as whole bytes (a fraction of a byte rounds up).

    A bare number (``1048576``, ``"1048576"``) counts in `bare_unit` — bytes unless
    given (one of ``SIZE_UNITS``); a string may carry a unit (``"100Mi"``, ``"1G"``).
    Zero is allowed; callers that need a positive size check it. Raises ValueError
    naming `what` and the accepted forms when the value cannot be read.
    """
    bare = _BARE.get(bare_unit, f"{bare_unit} units")
    forms = f"use {bare} as a number or a string like '512Mi', '4Gi', '1G'"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        # A ValueError, not a TypeError: Pydantic turns it into a 422 naming the field.
        raise ValueError(f"{what} must be a number of {bare} or a string like '512Mi', '4Gi'")  # noqa: TRY004
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite, non-negative size")
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(
                f"{what} {value!r} is not understood; {forms} (units: {', '.join(SIZE_UNITS)})"
            )
        number, unit = Fraction(m.group(1)), m.group(2) or bare_unit
    else:
        number, unit = Fraction(value), bare_unit
    size = number * (SIZE_UNITS[unit] if unit else 1)
    if size < 0:
        raise ValueError(f"{what} must be a finite, non-negative size")
    if size > MAX_SIZE_BYTES:
        raise ValueError(f"{what} must be at most {MAX_MEMORY_MIB // 2**20}Ti")
    return math.ceil(size)


def parse_memory_mib(value: float | str) -> int:
    """Return memory `value` as whole MiB (rounded up). A bare number — ``512`` or
    ``"512"`` — is MiB; a string may carry a unit (``"4Gi"``, ``"1G"`` = 954 MiB).

    Raises ValueError with the accepted forms when the value cannot be read.
    """
    return -(-parse_size_bytes(value, what="memory", bare_unit="Mi") // 2**20)
