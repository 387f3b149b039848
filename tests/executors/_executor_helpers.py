"""Helpers for executor tests (imported by the test modules of this folder)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from _waiting import wait_for as _wait_for

#: Generous upper bound for any awaited event; tests end as soon as it happens.
DEADLINE_S = 30.0


def wait_for(
    condition: Callable[[], object], timeout: float = DEADLINE_S, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    return _wait_for(condition, timeout, what or repr(condition), interval=0.005)


def py(code: str) -> list[str]:
    """argv running ``code`` with this interpreter, unbuffered."""
    return [sys.executable, "-u", "-c", code]
