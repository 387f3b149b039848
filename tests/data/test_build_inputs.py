"""Malformed specs and inputs are refused naming the file and column, leaving no output."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from plinth.cli.main import app

from ._builds import at, default_features, ev, imp, logs, write

runner = CliRunner()


def _spec(tmp_path, **spec):
    users, items = default_features()
    return logs(tmp_path, impressions=[imp(1, 1, 1, at("10:00"))],
                events=[ev("click", at("10:01"), req=1, item=1)], users=users, items=items,
                **spec)


def _build(spec_path):
    return runner.invoke(app, ["data", "build", str(spec_path)])


def _refused(result, *needles):
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert "Traceback" not in result.output


def test_a_good_spec_builds_through_the_cli(tmp_path):
    result = runner.invoke(app, ["data", "build", str(_spec(tmp_path)), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert '"rows": 1' in result.output
    assert (tmp_path / "dataset" / "manifest.json").is_file()


def test_missing_columns_name_the_file_and_column(tmp_path):
    spec = _spec(tmp_path)
    bad = write(tmp_path / "raw" / "impressions" / "part-0.parquet",
                [{"request_id": 1, "item_id": 1, "ts": at("10:00")}])
    _refused(_build(spec), str(bad), "user_id")
    assert not (tmp_path / "dataset").exists()


def test_wrong_types_name_the_file_and_column(tmp_path):
    spec = _spec(tmp_path)
    bad = write(tmp_path / "raw" / "events" / "part-0.parquet",
                [{"event": 1, "request_id": 1, "item_id": 1, "user_id": 1, "ts": at("10:01")}])
    _refused(_build(spec), str(bad), "'event'")
    write(bad, [{"event": "click", "request_id": 1.5, "item_id": 1, "user_id": 1,
                 "ts": at("10:01")}])
    _refused(_build(spec), str(bad), "'request_id'", "integers or strings")
    write(bad, [{"event": "click", "request_id": 1, "item_id": 1, "user_id": 1, "ts": 17}])
    _refused(_build(spec), str(bad), "'ts'", "timestamp")
    assert not (tmp_path / "dataset").exists()


def test_files_that_disagree_on_a_type_are_refused(tmp_path):
    spec = _spec(tmp_path)
    other = write(tmp_path / "raw" / "impressions" / "part-1.parquet",
                  [{"request_id": "r2", "user_id": 1, "item_id": 1, "ts": at("11:00")}])
    _refused(_build(spec), str(other), "'request_id'", "make the files agree")


def test_unparsable_timestamps_name_the_value(tmp_path):
    spec = _spec(tmp_path)
    bad = write(tmp_path / "raw" / "impressions" / "part-0.parquet",
                [{"request_id": 1, "user_id": 1, "item_id": 1, "ts": "2026-11-01T10:00:00"},
                 {"request_id": 2, "user_id": 1, "item_id": 2, "ts": "yesterday"}])
    _refused(_build(spec), str(bad), "'ts'", "'yesterday'")
    assert not (tmp_path / "dataset").exists()


def test_iso_string_timestamps_are_read(tmp_path):
    spec = _spec(tmp_path)
    write(tmp_path / "raw" / "impressions" / "part-0.parquet",
          [{"request_id": 1, "user_id": 1, "item_id": 1, "ts": "2026-11-01T10:00:00Z"}])
    assert _build(spec).exit_code == 0


@pytest.mark.parametrize(("window", "needle"), [("soon", "'soon'"), ("-5m", "'-5m'"),
                                                 (0, "positive")])
def test_a_window_that_is_not_a_duration_is_refused(tmp_path, window, needle):
    schema = {"label": "click", "categorical": ["user_id"],
              "labels": [{"name": "click", "event": "click", "window": window}]}
    spec = _spec(tmp_path, schema=schema)
    _refused(_build(spec), "schema.labels[0] (click): window", needle)
    assert not (tmp_path / "dataset").exists()


def test_a_schema_column_in_no_input_is_named(tmp_path):
    schema = {"label": "click", "categorical": ["user_id", "nowhere"],
              "labels": [{"name": "click", "event": "click", "window": "30m"}]}
    _refused(_build(_spec(tmp_path, schema=schema)), "'nowhere'", "in no input")


def test_a_missing_input_path_is_named(tmp_path):
    spec = _spec(tmp_path)
    doc = yaml.safe_load(spec.read_text())
    doc["events"] = "raw/nope"
    spec.write_text(yaml.safe_dump(doc))
    _refused(_build(spec), "spec.events", "raw/nope")


def test_a_negative_weight_is_refused_and_nothing_is_left(tmp_path):
    users, items = default_features()
    schema = {"label": "click", "categorical": ["user_id"], "weight": "w",
              "labels": [{"name": "click", "event": "click", "window": "30m"}]}
    spec = logs(tmp_path, impressions=[imp(1, 1, 1, at("10:00")) | {"w": -1.0}],
                events=[ev("click", at("10:01"), req=1, item=1)], users=users, items=items,
                schema=schema)
    _refused(_build(spec), "weight column 'w'")
    assert not (tmp_path / "dataset").exists()


def test_not_parquet_is_refused(tmp_path):
    spec = _spec(tmp_path)
    bad = tmp_path / "raw" / "items" / "part-0.parquet"
    bad.write_bytes(b"not parquet")
    _refused(_build(spec), str(bad), "not a readable Parquet file")


def test_event_types_must_be_strings_even_when_null(tmp_path):
    spec = _spec(tmp_path)
    write(tmp_path / "raw" / "events" / "part-0.parquet",
          [{"event": "click", "request_id": 1, "item_id": 1, "user_id": None, "ts": at("10:01")}],
          {"user_id": pa.int64()})
    assert _build(spec).exit_code == 0


def test_a_row_without_a_timestamp_is_refused(tmp_path):
    spec = _spec(tmp_path)
    bad = write(tmp_path / "raw" / "impressions" / "part-0.parquet",
                [imp(1, 1, 1, at("10:00")), imp(2, 1, 2, None)],
                {"ts": pa.timestamp("us")})
    _refused(_build(spec), str(bad), "'ts' is null in 1 rows")


def test_a_column_in_two_inputs_is_refused(tmp_path):
    users = [{"user_id": 1, "ts": at("00:00", -1), "seg": 1, "price": 3.0}]
    items = [{"item_id": 1, "ts": at("00:00", -1), "price": 1.0}]
    spec = logs(tmp_path, impressions=[imp(1, 1, 1, at("10:00"))],
                events=[ev("click", at("10:01"), req=1, item=1)], users=users, items=items)
    _refused(_build(spec), "'price' is in ['user_features', 'item_features']")


def test_the_module_entry_point_exits_2_on_bad_input_and_reads_params(tmp_path, monkeypatch,
                                                                      capsys):
    import json

    from plinth.data.build import main
    from plinth.data.spec import load_spec

    spec = _spec(tmp_path)
    write(tmp_path / "raw" / "impressions" / "part-0.parquet",
          [{"request_id": 1, "item_id": 1, "ts": at("10:00")}])
    assert main([str(spec)]) == 2
    assert "user_id" in capsys.readouterr().err
    write(tmp_path / "raw" / "impressions" / "part-0.parquet", [imp(1, 1, 1, at("10:00"))])
    params = {"spec": json.dumps(load_spec(spec).to_dict())}
    monkeypatch.setenv("PLINTH_PARAMS", json.dumps(params))
    assert main(["--params", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1


def test_the_progress_bar_passes_every_day_through():
    import datetime as dt

    from plinth.data.build import _progress

    items = [(dt.date(2026, 11, d), "fp") for d in (1, 2, 3)]
    assert list(_progress(items, True)) == items
