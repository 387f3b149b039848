"""The SDK's templates and metrics against a real server."""

from __future__ import annotations

import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import Client, ConflictError, NotFoundError, ValidationError

from ._helpers import Team, unique


def document(name: str, greeting: str = "hi") -> dict:
    return {
        "name": name,
        "parameters": [{"name": "greeting", "default": greeting}],
        "spec": {"roles": {"main": {"resources": {"cpu": 0.1, "memory": "32Mi"},
                                    "command": ["python", "-c", "print('{{ greeting }}')"]}}},
    }  # fmt: skip


def test_templates_and_metrics_through_the_sdk(
    server: LocalServer, admin: Client, team: Team
) -> None:
    name = unique("sdk-tpl")
    first = admin.templates.publish(document(name))
    assert (first["version"], first["created"]) == (1, True)
    assert admin.templates.publish(document(name))["created"] is False
    assert admin.templates.publish(document(name, "hello"))["version"] == 2
    with Client(server.url, team.token) as member:
        assert name in [t["name"] for t in member.templates.list()]
        assert member.templates.get(name)["parameters"][0]["default"] == "hello"
        assert member.templates.get(name, 1)["parameters"][0]["default"] == "hi"
        assert [v["version"] for v in member.templates.versions(name)] == [1, 2]
        with pytest.raises(NotFoundError):
            member.templates.get(unique("absent"))
        with pytest.raises(ConflictError):
            member.templates.publish(document(name))  # a platform template: admins only
        with pytest.raises(ValidationError, match="params.bogus: unknown parameter"):
            member.jobs.submit({"template": name, "params": {"bogus": 1}})

        job = member.jobs.submit({"template": name, "params": {"greeting": "bonjour"}})
        assert member.jobs.wait(job["id"], timeout=60)["state"] == "succeeded"
        points = [{"role": "worker", "step": s, "values": {"loss": 1.0 / (s + 1)}}
                  for s in range(3)]  # fmt: skip
        assert member.metrics.post(job["id"], points) == 3
        got = member.metrics.list(job["id"])
        assert [p["step"] for p in got] == [0, 1, 2]
        assert [p["step"] for p in member.metrics.follow(job["id"])] == [0, 1, 2]
        assert member.metrics.list(job["id"], after=got[0]["id"])[0]["step"] == 1
        with pytest.raises(ValidationError, match="loss"):
            member.metrics.post(job["id"], [{"role": "worker", "values": {"loss": "x"}}])
