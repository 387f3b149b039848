"""``parse_time``: ISO-8601, 'now' and relative times for --from/--until."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plinth.cli._parse import InputError, parse_time

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", "2026-05-01T10:00:00+00:00"),
        ("+2h", "2026-05-01T12:00:00+00:00"),
        ("+30m", "2026-05-01T10:30:00+00:00"),
        ("-1d", "2026-04-30T10:00:00+00:00"),
        ("+1.5h", "2026-05-01T11:30:00+00:00"),
        ("+1w", "2026-05-08T10:00:00+00:00"),
        ("+90s", "2026-05-01T10:01:30+00:00"),
        ("2026-06-01T09:00", "2026-06-01T09:00:00+00:00"),  # no zone: UTC
        ("2026-06-01T09:00+02:00", "2026-06-01T09:00:00+02:00"),
    ],
)
def test_times(text: str, want: str) -> None:
    assert parse_time(text, "--until", now=NOW) == want


@pytest.mark.parametrize("text", ["tomorrow", "+2", "2h", "+h", "2026-13-01"])
def test_bad_times_say_what_to_give(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_time(text, "--until", now=NOW)
    assert str(info.value).startswith("--until: ") and "+2h" in str(info.value)
