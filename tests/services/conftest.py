"""Fixtures of the service tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .rig import Rig


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", "plt_test")
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()
