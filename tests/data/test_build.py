"""The build's contract, as tables of rows before and after (Feast style)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from plinth.data import manifest as mf
from plinth.data.build import build
from plinth.data.reader import DataError, ParquetReader
from plinth.data.schema import Schema
from plinth.data.spec import load_spec

from ._builds import at, default_features, ev, imp, logs


def _rows(spec_path) -> pl.DataFrame:
    spec = load_spec(spec_path)
    m = mf.read_manifest(spec.output)
    assert m is not None
    return pl.read_parquet(mf.dataset_files(spec.output, m)).sort("request_id", "item_id")


def test_labels_inside_the_window_after_the_impression_count_once(tmp_path):
    users, items = default_features()
    spec = logs(
        tmp_path,
        impressions=[imp(1, 1, 1, at("10:00")), imp(2, 1, 2, at("10:00")),
                     imp(3, 2, 1, at("10:00")), imp(4, 2, 2, at("10:00")),
                     imp(5, 3, 3, at("10:00"))],
        events=[
            ev("click", at("09:59"), req=1, item=1),                       # before: no
            ev("click", at("10:05"), req=2, item=2),                       # inside: yes
            ev("click", at("10:05"), req=2, item=2),                       # duplicate
            ev("click", at("10:20"), req=2, item=2),                       # second click
            ev("click", at("10:31"), req=3, item=1),                       # outside 30m: no
            ev("click", at("10:30"), req=4, item=2),                       # edge: yes
            ev("click", at("10:10"), req=5, item=1),                       # other item: no
            ev("conversion", at("09:00", 1), user=3, item=3),              # 23h later: yes
            ev("conversion", at("12:00", 1), user=2, item=2),              # 26h later: no
            ev("conversion", at("09:00"), user=1, item=1),                 # before: no
        ],
        users=users, items=items,
    )
    result = build(load_spec(spec))
    out = _rows(spec)
    assert out["request_id"].to_list() == [1, 2, 3, 4, 5]
    assert out["click"].to_list() == [0, 1, 0, 1, 0]
    assert out["conversion"].to_list() == [0, 0, 0, 0, 1]
    assert result.rows_total == out.height == 5


def test_a_conversion_credits_the_latest_impression_of_the_pair(tmp_path):
    users, items = default_features()
    spec = logs(
        tmp_path,
        impressions=[imp(1, 1, 1, at("08:00")), imp(2, 1, 1, at("12:00")),
                     imp(3, 1, 1, at("18:00"))],
        events=[ev("conversion", at("13:00"), user=1, item=1)],
        users=users, items=items,
    )
    build(load_spec(spec))
    assert _rows(spec)["conversion"].to_list() == [0, 1, 0]


def test_the_last_touch_is_found_across_midnight(tmp_path):
    users, items = default_features()
    spec = logs(
        tmp_path,
        impressions=[imp(1, 1, 1, at("23:00")), imp(2, 1, 1, at("00:10", 1))],
        events=[ev("conversion", at("00:20", 1), user=1, item=1)],
        users=users, items=items,
    )
    build(load_spec(spec))
    assert _rows(spec)["conversion"].to_list() == [0, 1]


def test_a_feature_updated_after_the_impression_never_reaches_its_row(tmp_path):
    users = [{"user_id": 1, "ts": at("09:00"), "seg": 3},
             {"user_id": 1, "ts": at("10:00"), "seg": 5},   # same instant: visible (Feast)
             {"user_id": 1, "ts": at("10:00") + dt.timedelta(seconds=1),
              "seg": 7},                                      # one second later: never
             {"user_id": 2, "ts": at("11:00"), "seg": 9}]     # only after: null
    items = [{"item_id": 1, "ts": at("08:00"), "price": 1.0},
             {"item_id": 1, "ts": at("10:30"), "price": 2.0}]
    spec = logs(
        tmp_path,
        impressions=[imp(1, 1, 1, at("10:00")), imp(2, 2, 1, at("10:00")),
                     imp(3, 1, 1, at("11:00"))],
        events=[ev("click", at("10:01"), req=1, item=1)],
        users=users, items=items,
    )
    build(load_spec(spec))
    out = _rows(spec)
    assert out["seg"].to_list() == [5, None, 7]
    assert out["price"].to_list() == [1.0, 1.0, 2.0]


def test_a_snapshot_older_than_the_ttl_counts_as_missing(tmp_path):
    users = [{"user_id": 1, "ts": at("00:00", -3), "seg": 3},
             {"user_id": 2, "ts": at("09:00"), "seg": 4}]
    _, items = default_features()
    spec = logs(tmp_path, impressions=[imp(1, 1, 1, at("10:00")), imp(2, 2, 1, at("10:00"))],
                events=[ev("click", at("10:01"), req=1, item=1)], users=users, items=items,
                user_features={"path": "raw/users", "ttl": "2d"})
    build(load_spec(spec))
    assert _rows(spec)["seg"].to_list() == [None, 4]


def _many_days(tmp_path, days=3):
    users, items = default_features()
    imps = [imp(10 * d + k, 1 + k % 3, 1 + k % 3, at(f"{8 + k}:00", d))
            for d in range(days) for k in range(3)]
    events = [ev("click", at(f"{8 + k}:10", d), req=10 * d + k, item=1 + k % 3)
              for d in range(days) for k in range(2)]
    return logs(tmp_path, impressions=imps, events=events, users=users, items=items)


def _snapshot(directory):
    return {p: p.stat().st_mtime_ns for p in directory.rglob("*")}


def test_output_rows_equal_impressions_and_a_rerun_writes_nothing(tmp_path):
    spec = load_spec(_many_days(tmp_path))
    first = build(spec)
    assert first.days_built == ["2026-11-01", "2026-11-02", "2026-11-03"]
    m = mf.read_manifest(spec.output)
    assert m["rows"] == 9 == sum(d["rows"] for d in m["days"].values())
    assert m["schema_hash"] == Schema.from_yaml(spec.output / "schema.yaml").fingerprint()
    assert m["label_rates"]["click"] == pytest.approx(6 / 9)
    assert set(m["inputs"]) == {"impressions", "events", "user_features", "item_features"}
    before = _snapshot(spec.output)
    again = build(spec)
    assert again.days_built == [] and again.files_written == []
    assert _snapshot(spec.output) == before


def test_a_new_day_rebuilds_only_the_days_it_can_reach(tmp_path):
    spec_path = _many_days(tmp_path, days=2)
    spec = load_spec(spec_path)
    build(spec)
    old = mf.read_manifest(spec.output)["days"]
    # Day 3 arrives in new files; with a 24h window it can still change day 2's labels.
    from ._builds import write

    write(tmp_path / "raw" / "impressions" / "part-1.parquet", [imp(99, 1, 1, at("09:00", 2))])
    write(tmp_path / "raw" / "events" / "part-1.parquet",
          [ev("conversion", at("08:00", 2), user=2, item=2)])
    result = build(spec)
    assert result.days_built == ["2026-11-02", "2026-11-03"]
    assert result.days_skipped == ["2026-11-01"]
    new = mf.read_manifest(spec.output)["days"]
    assert new["2026-11-01"] == old["2026-11-01"]
    assert new["2026-11-02"]["files"] != old["2026-11-02"]["files"]
    assert not (spec.output / old["2026-11-02"]["files"][0]).exists()  # replaced, removed
    assert _rows(spec_path).height == 7


def test_an_interrupted_build_leaves_no_manifest(tmp_path):
    spec = load_spec(_many_days(tmp_path))

    def stop(day: str) -> None:
        if day == "2026-11-02":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(spec, after_day=stop)
    assert not spec.output.exists()  # a first build leaves nothing
    build(spec)
    m = mf.read_manifest(spec.output)
    assert m["rows"] == 9


def test_a_killed_build_is_refused_by_the_reader(tmp_path):
    """SIGKILL leaves _BUILDING and no manifest: training refuses it instead of reading half."""
    spec = load_spec(_many_days(tmp_path))
    build(spec)
    (spec.output / mf.MANIFEST).unlink()
    (spec.output / mf.BUILDING_MARKER).write_text("pid 1\n")
    schema = Schema.from_yaml(spec.output / "schema.yaml")
    with pytest.raises(DataError, match="did not finish"):
        ParquetReader(spec.output, schema, 4)


def test_the_reader_reads_exactly_the_manifests_files(tmp_path):
    spec = load_spec(_many_days(tmp_path))
    build(spec)
    stray = spec.output / "date=2026-11-01" / "part-stray.parquet"
    stray.write_bytes((next(spec.output.glob("date=2026-11-01/*.parquet"))).read_bytes())
    reader = ParquetReader(spec.output, Schema.from_yaml(spec.output / "schema.yaml"), 4)
    assert reader.num_rows == 9


def test_a_changed_schema_rebuilds_every_day_and_keeps_no_old_one(tmp_path):
    spec_path = _many_days(tmp_path)
    build(load_spec(spec_path))
    import yaml

    doc = yaml.safe_load(spec_path.read_text())
    doc["schema"]["numeric"] = []
    doc["days"] = {"from": "2026-11-02"}  # the first day is no longer built ...
    spec_path.write_text(yaml.safe_dump(doc))
    result = build(load_spec(spec_path))
    assert result.days_built == ["2026-11-02", "2026-11-03"]
    m = mf.read_manifest(load_spec(spec_path).output)
    assert sorted(m["days"]) == ["2026-11-02", "2026-11-03"]  # ... nor kept with the old schema
    assert "price" not in _rows(spec_path).columns


def test_a_second_build_into_the_same_output_is_refused_while_the_first_runs(tmp_path):
    import subprocess
    import sys

    spec = load_spec(_many_days(tmp_path))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        spec.output.mkdir()
        (spec.output / mf.BUILDING_MARKER).write_text(f"pid {sleeper.pid}\n")
        with pytest.raises(DataError, match=f"another build \\(pid {sleeper.pid}\\)"):
            build(spec)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert build(spec).rows_total == 9  # a dead build's marker does not block
    assert not (spec.output / mf.BUILDING_MARKER).exists()
