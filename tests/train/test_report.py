"""The training report: `plinth train local` prints test AUC, log loss, calibration by
decile and the numeric transforms; --json carries them; --report writes a self-contained
HTML page with the loss curve, the calibration plot and per-field table sizes."""

import json
import subprocess
import sys

import yaml

from plinth.train.report import summary_text


def _run(cfg_path, *extra):
    return subprocess.run([sys.executable, "-m", "plinth.train", "local", str(cfg_path), *extra],
                          capture_output=True, text=True, timeout=300, check=False)


def test_report_text_json_and_html(raw_count_data, config_dict, tmp_path):
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(config_dict(raw_count_data, tmp_path / "out")))
    page = tmp_path / "report.html"
    r = _run(cfg_path, "--json", "--report", str(page))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0 < res["auc"] < 1 and res["logloss"] > 0
    assert [c["decile"] for c in res["calibration"]] == list(range(1, 11))
    assert sum(c["count"] for c in res["calibration"]) == res["test_samples"]
    assert len(res["numeric_transforms"]) == 3 and "log1p" in res["numeric_transforms"][0]
    assert [f["field"] for f in res["fields"]] == ["c1", "c2", "c3", "m1"]
    assert res["loss_curve"] and res["report"] == str(page)

    text = page.read_text()
    assert text.count("<svg") == 2 and "calibration by decile" in text
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no CDN
    for f in res["fields"]:
        assert f"<td>{f['field']}</td>" in text

    summary = summary_text(res)
    for needle in ("test AUC", "log loss", "calibration", "numeric transforms", "n1: log1p"):
        assert needle in summary


def test_plain_output_is_the_summary(raw_count_data, config_dict, tmp_path):
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(config_dict(raw_count_data, tmp_path / "out")))
    r = _run(cfg_path)
    assert r.returncode == 0, r.stderr
    assert "test AUC" in r.stdout and "calibration" in r.stdout and "n2:" in r.stdout
