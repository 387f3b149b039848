"""`plinth data stats`: counts, distinct ids, frequencies, null rates, label rates, HTML."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from plinth.cli.main import app
from plinth.data.build import build
from plinth.data.spec import load_spec
from plinth.data.stats import dataset_stats

from ._builds import at, ev, imp, logs

runner = CliRunner()


def _dataset(tmp_path):
    users = [{"user_id": u, "ts": at("00:00", -1), "seg": None if u == 3 else u} for u in (1, 2, 3)]
    items = [{"item_id": i, "ts": at("00:00", -1), "price": float(i)} for i in (1, 2)]
    imps = [imp(1, 1, 1, at("10:00")), imp(2, 1, 2, at("11:00")), imp(3, 1, 1, at("12:00")),
            imp(4, 2, 1, at("10:00", 1)), imp(5, 3, 1, at("11:00", 1))]
    events = [ev("click", at("10:01"), req=1, item=1), ev("click", at("10:02", 1), req=4, item=1)]
    spec = load_spec(logs(tmp_path, impressions=imps, events=events, users=users, items=items))
    build(spec)
    return spec.output


def test_field_and_label_statistics(tmp_path):
    s = dataset_stats(_dataset(tmp_path))
    assert s["rows"] == 5 and s["days"] == ["2026-11-01", "2026-11-02"]
    user = s["fields"]["user_id"]
    assert (user["count"], user["distinct"], user["null_rate"]) == (5, 3, 0.0)
    assert user["frequency"][:3] == [{"k": 1, "ids": 3}, {"k": 2, "ids": 1}, {"k": 5, "ids": 0}]
    assert s["fields"]["seg"]["null_rate"] == 0.2
    assert s["fields"]["price"]["kind"] == "numeric" and s["fields"]["price"]["max"] == 2.0
    click = s["labels"]["click"]
    assert [d["rate"] for d in click["by_day"]] == [1 / 3, 1 / 2]
    assert click["rate"] == 2 / 5
    assert s["schema_hash"].startswith("sha256:")


def test_distinct_is_estimated_above_the_threshold(tmp_path):
    s = dataset_stats(_dataset(tmp_path), exact_limit=0)
    assert s["fields"]["user_id"]["distinct_exact"] is False
    assert s["fields"]["user_id"]["distinct"] == 3  # HyperLogLog is exact at this size


def test_cli_json_and_html_report(tmp_path):
    ds = _dataset(tmp_path)
    report = tmp_path / "report.html"
    r = runner.invoke(app, ["data", "stats", str(ds), "-o", "json", "--html", str(report)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"] == 5
    page = report.read_text()
    assert page.count("<svg") >= 3  # label rates, frequency curves, a numeric histogram
    assert "<polyline" in page and "click" in page and "user_id" in page
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_a_missing_dataset_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["data", "stats", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output
