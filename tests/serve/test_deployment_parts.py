"""The parts of deployments that need no server: the endpoint's balancing, retries and
canary fallback (``deployment_traffic``), the restart backoff, the create request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from plinth.config import ServerConfig
from plinth.services import deployment_traffic
from plinth.services.deployment_restarts import WINDOW_S, DeploymentRestarts
from plinth.services.deployment_traffic import Traffic
from plinth.services.deployments import DeploymentCreate


def _traffic(answers: dict[str, object]) -> tuple[Traffic, list[str]]:
    """A Traffic whose replicas answer as `answers` says: a status code, or an exception
    class raised as the transport's error."""
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        addr = f"{request.url.host}:{request.url.port}"
        calls.append(addr)
        a = answers[addr]
        if isinstance(a, type):
            raise a("down", request=request)
        return httpx.Response(a, json={"predictions": [0.5], "from": addr})

    t = Traffic()
    t._client = httpx.Client(transport=httpx.MockTransport(handle))
    return t, calls


def test_round_robin_over_replicas():
    t, calls = _traffic({"a:1": 200, "b:2": 200})
    got = [t.predict(lambda: [["a:1", "b:2"]], b"[]").replica for _ in range(4)]
    assert sorted(got) == ["a:1", "a:1", "b:2", "b:2"]
    assert len(calls) == 4


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.RemoteProtocolError,
                                     httpx.ReadError, 503])
def test_a_replica_that_fails_is_skipped(failure):
    t, _ = _traffic({"a:1": failure, "b:2": 200})
    for _ in range(4):
        a = t.predict(lambda: [["a:1", "b:2"]], b"[]")
        assert (a.status, a.replica) == (200, "b:2")


def test_client_errors_are_passed_through_not_retried():
    t, calls = _traffic({"a:1": 422, "b:2": 200})
    answers = {t.predict(lambda: [["a:1"], ["b:2"]], b"[]").status for _ in range(3)}
    assert answers == {422} and calls == ["a:1"] * 3


def test_the_other_pool_answers_when_the_drawn_one_cannot():
    t, _ = _traffic({"c:1": httpx.ConnectError, "m:1": 200})
    assert t.predict(lambda: [["c:1"], ["m:1"]], b"[]").replica == "m:1"
    assert t.predict(lambda: [[], ["m:1"]], b"[]").replica == "m:1"


def test_no_replica_answering_is_a_503_after_the_retry_window(monkeypatch):
    monkeypatch.setattr(deployment_traffic, "RETRY_FOR_S", 0.2)
    t, calls = _traffic({"a:1": httpx.ConnectError})
    a = t.predict(lambda: [["a:1"]], b"[]")
    assert a.status == 503 and a.replica is None and b"ConnectError" in a.content
    assert len(calls) >= 2  # tried again after a pause, not once
    assert t.predict(lambda: [[]], b"[]").status == 503


def test_restart_backoff_grows_and_starts_over_after_the_window():
    cfg = ServerConfig()
    r = DeploymentRestarts(None, None, cfg, Path("."), None)  # type: ignore[arg-type]
    key = ("deploy-1", "replica", 0)
    assert r._delay(key, 1000.0) == 0.0  # the first restart: at once
    r._restarts[key] = [1000.0]
    assert r._delay(key, 1000.0) == cfg.jobs.retry_backoff.delay_s(1)
    r._restarts[key] = [1000.0, 1001.0]
    assert r._delay(key, 1001.0) == cfg.jobs.retry_backoff.delay_s(2)
    assert r._delay(key, 1001.0 + WINDOW_S) == 0.0  # long ago: start over
    assert r._delay(("deploy-1", "canary", 0), 1001.0) == 0.0  # another replica


@pytest.mark.parametrize("body, words", [
    ({"name": "x", "model": "ctr"}, "model"),
    ({"name": "x", "model": "ctr@production", "replicas": 0}, "replicas"),
    ({"name": "X", "model": "ctr@production"}, "name"),
    ({"name": "x", "model": "ctr@production", "canary_percent": 150}, "canary_percent"),
    ({"name": "x", "model": "ctr@production", "resources": {"cpu": 0}}, "cpu"),
    ({"name": "x", "model": "ctr@production", "modle": "y"}, "modle"),
])
def test_create_request_refusals_name_the_field(body, words):
    with pytest.raises(ValidationError) as e:
        DeploymentCreate.model_validate(body)
    assert words in str(e.value)
