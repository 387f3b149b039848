"""Helpers for executor tests (imported by the test modules of this folder)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest

#: Generous upper bound for any awaited event; tests end as soon as it happens.
DEADLINE_S = 30.0


def wait_for(
    condition: Callable[[], object], timeout: float = DEADLINE_S, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.005)


def py(code: str) -> list[str]:
    """argv running ``code`` with this interpreter, unbuffered."""
    return [sys.executable, "-u", "-c", code]
