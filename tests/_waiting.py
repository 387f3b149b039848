"""``wait_for``: the one polling helper of the tests (for conditions no event reports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Poll `pred` every `interval` s until it returns something truthy; fail after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
