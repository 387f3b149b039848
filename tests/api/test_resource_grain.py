"""Zero and sub-grain resources are refused at submit with the rule named: a replica
that holds nothing would fit any quota and any node, any number of times."""

from __future__ import annotations

import pytest

from plinth.services.specs import Resources

from .conftest import Plinth


@pytest.mark.parametrize(
    ("resources", "field", "rule"),
    [
        ({"cpu": 0}, "cpu", "at least 0.01 cores (the CPU grain)"),
        ({"cpu": 1e-300}, "cpu", "at least 0.01 cores (the CPU grain)"),
        ({"cpu": 0.001}, "cpu", "at least 0.01 cores (the CPU grain)"),
        ({"memory": 0}, "memory", "at least 1 MiB of memory (the memory grain)"),
        ({"memory": 1e-300}, "memory", "at least 1 MiB of memory (the memory grain)"),
        ({"memory": "0Mi"}, "memory", "at least 1 MiB of memory (the memory grain)"),
    ],
)
def test_sub_grain_resources_are_refused_naming_the_rule(
    plinth: Plinth, resources: dict, field: str, rule: str
) -> None:
    h, _ = plinth.member()
    body = {"name": "tiny", "roles": {"main": {"command": ["true"], "resources": resources}}}
    r = plinth.c.post("/api/v1/jobs", headers=h, json=body)
    assert r.status_code == 422, r.text
    msgs = " | ".join(d["msg"] for d in r.json()["detail"])
    assert f"roles.main.resources.{field}" in msgs and rule in msgs, msgs
    assert plinth.c.get("/api/v1/jobs", headers=h).json() == []


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_cpu_is_refused(plinth: Plinth, bad: str) -> None:
    h, _ = plinth.member()
    head = '{"name": "x", "roles": {"main": {"command": ["true"], "resources": {"cpu": '
    body = head + bad + "}}}}"
    r = plinth.c.post(
        "/api/v1/jobs", headers={**h, "Content-Type": "application/json"}, content=body
    )
    assert r.status_code == 422, r.text


def test_the_grain_itself_is_accepted() -> None:
    r = Resources(cpu=0.01, memory=1)
    assert (r.cpu, r.memory) == (0.01, 1)
