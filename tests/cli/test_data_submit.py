"""`plinth data build --submit`: the build runs as a platform job under the group's quota."""

from __future__ import annotations

import json

import pytest

from plinth.cli.data import build_job_spec
from plinth.data import manifest as mf
from plinth.data.rawlogs import RawLogSpec, generate_raw_logs
from plinth.data.spec import load_spec

from ._helpers import plinth


def _raw(tmp_path):
    generate_raw_logs(RawLogSpec(impressions=1_000, users=50, items=20, user_snapshots=100,
                                 item_snapshots=40, days=2, truth=False), tmp_path)
    return tmp_path / "spec.yaml"


def test_the_job_runs_the_build_module_on_the_resolved_spec(tmp_path):
    spec = load_spec(_raw(tmp_path))
    job = build_job_spec(spec, name="b", cpu=1, memory="1Gi", max_runtime="1h")
    main = job["roles"]["main"]
    assert main["command"][:4] == ["python", "-m", "plinth.data.build", "--params"]
    assert main["resources"] == {"cpu": 1, "memory": "1Gi"}
    sent = json.loads(job["params"]["spec"])
    assert sent["output"] == str(tmp_path / "dataset")  # absolute: the job runs elsewhere
    assert load_spec(sent) == spec


@pytest.mark.slow
def test_submit_builds_the_dataset_as_a_job(tmp_path, team):
    spec = _raw(tmp_path)
    r = plinth(["data", "build", str(spec), "--submit", "--wait", "--cpu", "1",
                "--memory", "2Gi", "-o", "json"], team.env)
    assert r.returncode == 0, r.stdout + r.stderr
    job = json.loads(r.stdout)
    assert job["state"] == "succeeded"
    assert job["group"] == team.group
    m = mf.read_manifest(tmp_path / "dataset")
    assert m is not None and m["rows"] == 1_000


def test_submit_over_quota_is_refused(tmp_path, team):
    r = plinth(["data", "build", str(_raw(tmp_path)), "--submit", "--cpu", "64", "-o", "json"],
               team.env)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "dataset").exists()
