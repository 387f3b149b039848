"""Formatting of values in the CLI's tables (pure)."""

from __future__ import annotations

import pytest

from plinth.cli._output import fmt_bytes, fmt_duration, fmt_memory, fmt_resources, fmt_time


@pytest.mark.parametrize(
    ("mib", "text"), [(32768, "32Gi"), (512, "512Mi"), (1536, "1536Mi"), (1024**2, "1Ti")]
)
def test_memory_in_the_largest_exact_unit(mib: int, text: str) -> None:
    assert fmt_memory(mib) == text


def test_resources() -> None:
    assert fmt_resources({"cpu": 8.0, "memory": 32768, "gpu": 2}) == "cpu=8 memory=32Gi gpu=2"
    assert fmt_resources({"cpu": 0.5}) == "cpu=0.5"
    assert fmt_resources(None) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"), [(86400.0, "1d"), (7200, "2h"), (300, "5m"), (90, "90s"), (None, "-")]
)
def test_durations(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_bytes_and_times() -> None:
    assert fmt_bytes(10) == "10 B"
    assert fmt_bytes(1744) == "1.7 KiB"
    assert fmt_time("2026-11-27T06:03:49.434769Z") == "2026-11-27 06:03:49"
    assert fmt_time(None) == "-"
