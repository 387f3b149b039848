"""Templates and live metrics end to end: the real ``plinth`` executable against a real
server subprocess. Covers the CLI side of issue 11's Done-when 5 and Done-when 6 (a
running job's loss and samples/s series through `plinth job metrics ID -o json`)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from _waiting import wait_for

from plinth.cli.local_server import LocalServer

from ._helpers import Team, plinth, plinth_json, unique

# A job that reports metrics the way a trainer does (httpx, PLINTH_URL/TOKEN/WORKLOAD_ID),
# then keeps running until the test lets it finish.
REPORTER = textwrap.dedent("""
    import os, pathlib, sys, time, httpx
    url, token, job = (os.environ[k] for k in ("PLINTH_URL", "PLINTH_TOKEN", "PLINTH_WORKLOAD_ID"))
    points = [{"role": "worker", "replica": 0, "step": 10 * (s + 1),
               "values": {"loss": round(1.0 / (s + 2), 4), "samples_per_s": 1000.0 + s}}
              for s in range(5)]
    r = httpx.post(f"{url}/api/v1/jobs/{job}/metrics", json={"points": points},
                   headers={"Authorization": f"Bearer {token}"})
    print("posted", r.status_code, r.text, flush=True)
    while not pathlib.Path(sys.argv[1]).exists():
        time.sleep(0.05)
""")


def template_doc(name: str) -> dict:
    return {
        "name": name,
        "description": "echo a greeting n times",
        "parameters": [
            {"name": "greeting", "default": "hello", "allowed": ["hello", "bonjour"]},
            {"name": "n", "type": "integer", "default": 1, "min": 1, "max": 3},
            {"name": "cpu", "type": "number", "default": 0.1, "layer": "platform"},
        ],
        "presets": {"platform": {"cpu": 0.2}},
        "spec": {"roles": {"main": {
            "replicas": "{{ n }}", "resources": {"cpu": "{{ cpu }}", "memory": "64Mi"},
            "command": [sys.executable, "-c", "import sys; print(sys.argv[1])", "{{ greeting }}"],
        }}},
    }  # fmt: skip


@pytest.mark.slow
def test_templates_from_create_to_a_job_that_records_its_version(
    team: Team, admin_env: dict[str, str], tmp_path: Path
) -> None:
    name = unique("greet")
    doc = tmp_path / "t.yaml"
    doc.write_text(yaml.safe_dump(template_doc(name)))
    created = plinth_json(["template", "create", str(doc)], admin_env)
    assert (created["name"], created["version"], created["group"]) == (name, 1, None)
    again = plinth(["template", "create", str(doc)], admin_env)
    assert f"Unchanged (same as the latest version): template {name} version 1" in again.stdout
    body = template_doc(name)
    body["parameters"][1]["default"] = 2
    doc.write_text(yaml.safe_dump(body))
    assert plinth_json(["template", "create", str(doc)], admin_env)["version"] == 2
    listed = plinth_json(["template", "list"], team.env)
    assert {"sparse-ctr", name} <= {t["name"] for t in listed}
    assert [v["version"] for v in plinth_json(["template", "versions", name], team.env)] == [1, 2]
    assert plinth_json(["template", "show", name, "--version", "1"], team.env)["parameters"][1][
        "default"] == 1  # fmt: skip
    shown = plinth(["template", "show", name], team.env)
    assert shown.returncode == 0 and "greeting" in shown.stdout and "0.2 (platform preset)" in (
        shown.stdout)  # fmt: skip

    job = plinth_json(["job", "submit", "--template", f"{name}@1", "--param", "greeting=bonjour",
                       "--wait"], team.env)  # fmt: skip
    assert job["state"] == "succeeded"
    got = plinth_json(["job", "get", job["id"]], team.env)
    assert got["template"] == {"name": name, "version": 1,
                               "params": {"cpu": 0.2, "greeting": "bonjour", "n": 1}}
    assert got["spec"]["roles"]["main"]["command"][-1] == "bonjour"
    assert got["spec"]["roles"]["main"]["resources"]["cpu"] == 0.2
    table = plinth(["job", "get", job["id"]], team.env)
    assert f"{name} v1 (cpu=0.2, greeting=bonjour, n=1)" in table.stdout
    assert "spec (expanded from the template):" in table.stdout
    logs = plinth(["job", "logs", job["id"]], team.env)
    assert "[main-0] bonjour" in logs.stdout

    # A spec file may name the template and its params; --param overrides them.
    spec = tmp_path / "job.yaml"
    spec.write_text(f"template: {name}\nname: from-file\nparams: {{n: 3, greeting: hello}}\n")
    job = plinth_json(["job", "submit", str(spec), "--param", "n=1", "--wait"], team.env)
    assert job["name"] == "from-file" and job["template"]["params"]["n"] == 1

    refused = plinth(["job", "submit", "--template", name, "--param", "n=9"], team.env)
    assert refused.returncode == 2
    assert f"template '{name}' version 2: params.n: must be at most 3" in refused.stderr
    refused = plinth(["job", "submit", "--template", name, "--param", "cpu=4"], team.env)
    assert refused.returncode == 2 and "platform preset" in refused.stderr
    assert plinth(["job", "submit"], team.env).returncode == 2


@pytest.mark.slow
def test_job_metrics_show_a_running_jobs_series(
    team: Team, server: LocalServer, tmp_path: Path
) -> None:
    marker = tmp_path / "finish"
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"name": "reporter", "roles": {"worker": {
        "resources": {"cpu": 0.1, "memory": "64Mi"},
        "command": [sys.executable, "-c", REPORTER, str(marker)]}}}))  # fmt: skip
    job = plinth_json(["job", "submit", str(spec)], team.env)

    def series() -> dict | None:
        got = plinth_json(["job", "metrics", job["id"]], team.env)
        return got if len(got["points"]) == 5 else None

    got = wait_for(series, 60, "the job's 5 metrics points")
    assert plinth_json(["job", "get", job["id"]], team.env)["state"] == "running"
    assert [pt["step"] for pt in got["points"]] == [10, 20, 30, 40, 50]
    assert [pt["values"]["loss"] for pt in got["points"]] == [0.5, 0.3333, 0.25, 0.2, 0.1667]
    assert [pt["values"]["samples_per_s"] for pt in got["points"]] == [1000.0 + s for s in range(5)]
    loss = plinth_json(["job", "metrics", job["id"], "--name", "loss"], team.env)
    assert all(set(pt["values"]) == {"loss"} for pt in loss["points"])
    table = plinth(["job", "metrics", job["id"]], team.env)
    assert "LOSS" in table.stdout and "SAMPLES_PER_S" in table.stdout and "worker-0" in table.stdout

    marker.touch()
    followed = plinth(["job", "metrics", job["id"], "--follow", "-o", "json"], team.env)
    assert followed.returncode == 0, followed.stderr
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [pt["step"] for pt in lines] == [10, 20, 30, 40, 50]
    assert plinth_json(["job", "get", job["id"]], team.env)["state"] == "succeeded"
