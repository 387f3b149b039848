"""Templates over the real app: publishing and immutable versions, who may do what, the
built-in sparse-ctr, and templated submissions (Done-when 5 of issue 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import PY, Plinth

T = "/api/v1/templates"


def sleeper(name: str = "sleeper", **over: Any) -> dict[str, Any]:
    """A small template: `n` replicas sleeping `secs` seconds, with a data path."""
    body: dict[str, Any] = {
        "name": name,
        "description": "sleeps",
        "parameters": [
            {"name": "n", "type": "integer", "default": 1, "min": 1, "max": 3},
            {"name": "secs", "type": "number", "default": 0, "min": 0, "max": 60},
            {"name": "data", "type": "path", "required": False},
            {"name": "cpu", "type": "number", "default": 0.1, "layer": "platform"},
        ],
        "spec": {
            "params": {"data": "{{ data }}"},
            "roles": {"main": {
                "replicas": "{{ n }}",
                "resources": {"cpu": "{{ cpu }}", "memory": "64Mi"},
                "command": [PY, "-c", "import time, sys; time.sleep(float(sys.argv[1]))",
                            "{{ secs | string }}"],
            }},
        },
    }  # fmt: skip
    body.update(over)
    return body


def publish(p: Plinth, headers: dict[str, str], body: dict[str, Any], status: int = 201) -> dict:
    r = p.c.post(T, json=body, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def submit(p: Plinth, headers: dict[str, str], status: int = 201, **body: Any) -> dict:
    r = p.c.post("/api/v1/jobs", json=body, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def test_builtin_sparse_ctr_is_registered_at_start(plinth: Plinth) -> None:
    h, _ = plinth.member()
    names = [t["name"] for t in plinth.c.get(T, headers=h).json()]
    assert "sparse-ctr" in names
    t = plinth.c.get(f"{T}/sparse-ctr", headers=h).json()
    assert t["group"] is None and t["created_by"] == "plinth" and t["version"] == 1
    roles = t["spec"]["roles"]
    assert roles["ps"]["command"] == ["python", "-m", "plinth.sparse.server"]
    assert roles["worker"]["command"] == ["python", "-m", "plinth.train.distributed"]
    assert roles["ps"]["replicas"] == "{{ ps }}" and roles["worker"]["replicas"] == "{{ workers }}"


def test_sparse_ctr_expands_with_layered_values(plinth: Plinth, tmp_path: Path) -> None:
    h, group = plinth.member()
    (tmp_path / "ctr").mkdir()
    job = submit(plinth, h, template="sparse-ctr", name="ctr",
                 params={"model": "wide_deep", "data": str(tmp_path / "ctr"), "workers": 3})
    plinth.c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h)
    assert job["template"]["name"] == "sparse-ctr" and job["template"]["version"] == 1
    spec = job["spec"]
    assert spec["name"] == "ctr" and spec["group"] == group
    assert spec["roles"]["ps"]["replicas"] == 2  # the engineering default
    assert spec["roles"]["worker"]["replicas"] == 3  # the submit
    assert spec["roles"]["worker"]["resources"] == {"cpu": 1.0, "memory": 2048, "gpu": 0}
    config = spec["params"]["config"]
    assert config["model"] == "wide_deep" and config["batch_size"] == 1024
    assert config["data"]["train"] == f"{tmp_path / 'ctr'}/train"
    assert config["schema"] == f"{tmp_path / 'ctr'}/schema.yaml"


def test_refused_at_submit_with_the_problem_named(plinth: Plinth, tmp_path: Path) -> None:
    h, _ = plinth.member()
    publish(plinth, plinth.admin, sleeper())
    cases = [
        ({"nope": 1}, "params.nope: unknown parameter; template 'sleeper' takes data, n, secs"),
        ({"n": "two"}, "params.n: must be an integer, got string 'two'"),
        ({"n": 4}, "params.n: must be at most 3"),
        ({"secs": -1}, "params.secs: must be at least 0"),
        ({"cpu": 4}, "params.cpu: set by the template's platform preset"),
        ({"data": str(tmp_path / "missing")}, f"'{tmp_path / 'missing'}' does not exist"),
        ({"data": "relative/path"}, "params.data: give an absolute path"),
        ({"data": str(plinth.home)}, "is inside the server's private home"),
    ]  # fmt: skip
    for params, problem in cases:
        detail = submit(plinth, h, 422, template="sleeper", params=params)["detail"]
        assert detail == f"template 'sleeper' version 1: {problem}" or problem in detail, detail
    detail = submit(plinth, h, 422, template="absent")["detail"]
    assert "template: template 'absent' not found" in detail
    detail = submit(plinth, h, 422, template="sleeper", version=9)["detail"]
    assert "has no version 9 (latest: 1)" in detail
    assert plinth.c.get("/api/v1/jobs", headers=h).json() == []  # nothing half-submitted


def test_templates_that_read_files_or_run_code_are_refused(plinth: Plinth) -> None:
    attempts = {
        "{% include '/etc/passwd' %}": "templates have no file access",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}": "is refused",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}": "is refused",
        "{{ config }}": "'config', not a declared parameter",
    }
    for leaf, problem in attempts.items():
        body = sleeper("evil")
        body["spec"]["roles"]["main"]["command"][2] = leaf
        detail = publish(plinth, plinth.admin, body, 422)["detail"]
        assert "spec.roles.main.command[2]" in str(detail) and problem in str(detail), detail
    assert plinth.c.get(f"{T}/evil", headers=plinth.admin).status_code == 404


def test_a_stored_template_that_runs_code_is_refused_at_submit(plinth: Plinth) -> None:
    # A version written before today's checks (or by hand): the sandbox refuses it at submit.
    from plinth.store.db import Database
    from plinth.store.models import TemplateVersion

    publish(plinth, plinth.admin, sleeper("old"))
    db = Database(f"sqlite:///{plinth.home / 'plinth.db'}")
    try:
        with db.session() as s:
            v = s.query(TemplateVersion).filter_by(version=1).all()[-1]
            doc = dict(v.document)
            doc["spec"] = {"roles": {"main": {"command": ["{{ n.__class__.__base__ }}"]}}}
            v.document = doc
    finally:
        db.dispose()
    detail = submit(plinth, plinth.admin, 422, template="old")["detail"]
    assert "template 'old' version 1: spec.roles.main.command[0]" in detail
    assert "'__base__' is refused" in detail


def test_versions_are_immutable_and_jobs_record_theirs(plinth: Plinth) -> None:
    h, _ = plinth.member()
    v1 = publish(plinth, plinth.admin, sleeper())
    assert v1["version"] == 1
    assert publish(plinth, plinth.admin, sleeper(), 200)["version"] == 1  # same content
    changed = sleeper(description="sleeps, more replicas")
    changed["parameters"][0]["default"] = 2
    assert publish(plinth, plinth.admin, changed)["version"] == 2
    assert plinth.c.get(f"{T}/sleeper/versions/1", headers=h).json()["parameters"] == v1[
        "parameters"]  # fmt: skip
    versions = plinth.c.get(f"{T}/sleeper/versions", headers=h).json()
    assert [v["version"] for v in versions] == [1, 2]
    latest = submit(plinth, h, template="sleeper")
    pinned = submit(plinth, h, template="sleeper", version=1)
    assert latest["template"] == {"name": "sleeper", "version": 2,
                                  "params": {"cpu": 0.1, "data": None, "n": 2, "secs": 0}}
    assert pinned["template"]["version"] == 1
    assert latest["spec"]["roles"]["main"]["replicas"] == 2
    assert pinned["spec"]["roles"]["main"]["replicas"] == 1
    done = plinth.wait(h, latest["id"])
    assert done["state"] == "succeeded" and done["template"]["version"] == 2
    r = plinth.c.post(f"/api/v1/jobs/{latest['id']}/rerun", headers=h)
    assert r.status_code == 201 and r.json()["template"] == latest["template"]


def test_who_may_publish_and_see(plinth: Plinth) -> None:
    h, group = plinth.member()
    other, _ = plinth.member()
    # A member's template is its group's, without a platform preset.
    mine = publish(plinth, h, sleeper("mine"))
    assert mine["group"] == group
    body = sleeper("mine2", presets={"platform": {"cpu": 1}})
    assert "only admins set the platform preset" in publish(plinth, h, body, 403)["detail"]
    assert "members publish templates of their own group" in publish(
        plinth, h, sleeper("x", group="default"), 403)["detail"]  # fmt: skip
    # Platform templates: admins only, and members cannot add versions to them.
    publish(plinth, plinth.admin, sleeper("shared", group=None))
    assert publish(plinth, h, sleeper("shared", description="mine now"), 409)
    # Another group sees neither the template nor can use it.
    assert plinth.c.get(f"{T}/mine", headers=other).status_code == 404
    assert "mine" not in [t["name"] for t in plinth.c.get(T, headers=other).json()]
    assert "not found" in submit(plinth, other, 422, template="mine")["detail"]
    assert publish(plinth, other, sleeper("mine"), 409)["detail"].startswith("name 'mine'")
    # The owner's group and admins do.
    assert plinth.c.get(f"{T}/mine", headers=plinth.admin).status_code == 200
    job = submit(plinth, h, template="mine")
    assert job["template"]["name"] == "mine"
