"""``Resources``: the one resource value (arithmetic, fits, dominant share, dict form)."""

from __future__ import annotations

import pytest

from plinth.scheduler.resources import CPU_EPS, Resources


def test_arithmetic_and_fits_with_the_one_tolerance() -> None:
    a, b = Resources(0.1, 512, 0), Resources(0.2, 512, 1)
    assert a + b == Resources(0.1 + 0.2, 1024, 1)
    assert (a + b) - b == Resources(0.1 + 0.2 - 0.2, 512, 0)
    assert (a + b).fits_in(Resources(0.3, 1024, 1))  # 0.30000000000000004 <= 0.3
    assert not Resources(0.3 + 10 * CPU_EPS, 0, 0).fits_in(Resources(0.3, 0, 0))
    assert not Resources(0, 1025, 0).fits_in(Resources(8, 1024, 0))
    assert Resources(1, 0, 2).exceeds(Resources(1, 0, 1)) == ("gpu",)


@pytest.mark.parametrize(
    ("v", "total", "want"),
    [
        (Resources(2, 1024, 0), Resources(8, 8192, 0), 0.25),
        (Resources(1, 1024, 1), Resources(8, 8192, 2), 0.5),
        (Resources(1, 0, 0), Resources(), 0.0),
    ],
)
def test_dominant_share(v: Resources, total: Resources, want: float) -> None:
    assert v.dominant_share(total) == pytest.approx(want)


def test_dict_round_trip() -> None:
    r = Resources(1.5, 2048, 1)
    assert r.to_dict() == {"cpu": 1.5, "memory": 2048, "gpu": 1}
    assert Resources.from_dict(r.to_dict()) == r
    assert Resources.from_dict({"cpu": 2}) == Resources(2.0, 0, 0)
    assert Resources.from_dict(None) == Resources()
