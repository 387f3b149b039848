"""Schemathesis against a real server's /openapi.json: no 5xx on generated input.

A real ``plinth server`` subprocess on loopback with a fresh home; every
operation in the published schema gets a few generated requests with an
admin token. Only server errors fail the test: 4xx answers are what bad
input should get. The node is small so fuzzed jobs that happen to be valid
cannot pile up processes; whatever still runs at the end is cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err

from plinth.cli.local_server import LocalServer
from plinth.client import TERMINAL_STATES, Client

TOKEN = "fuzz-admin-token-5d1e8a"
MAX_EXAMPLES = 25  # per operation and mode; keeps the whole run near a minute on two cores


@schemathesis.serializer("application/gzip")
def _raw_bytes(_ctx: object, value: object) -> bytes:
    """Upload bodies are raw bytes (a gzip'd tar when valid); send what was generated."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", errors="surrogatepass")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    config = {"nodes": [{"name": "fuzz", "cpu": 1, "memory": 1024, "gpu": 1}]}
    server = LocalServer(home, config=config, admin_token=TOKEN).start()
    try:
        yield server
    finally:
        try:
            with Client(server.url, TOKEN) as client:
                for job in client.jobs.list(limit=10000):
                    if job["state"] not in TERMINAL_STATES:
                        client.jobs.cancel(job["id"])
                for nb in client.notebooks.list(limit=10000):  # fuzzed sessions too
                    if nb["state"] not in TERMINAL_STATES:
                        client.notebooks.stop(nb["id"])
        finally:
            server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LocalServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def _operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"the server's OpenAPI schema is invalid: {result.err()}")
        operations.append(result.ok())
    return operations


# schemathesis.pytest.from_fixture does not run under pytest 9 (it reads a removed
# private attribute), so the operations' strategies are driven with Hypothesis directly.
@pytest.mark.timeout(900)  # every new operation adds 50 calls; 300 s ran out at load 20
def test_no_server_errors(api_schema: schemathesis.BaseSchema, fuzz_server: LocalServer) -> None:
    operations = _operations(api_schema)
    assert any(op.path.startswith("/api/v1/jobs") for op in operations)
    with Client(fuzz_server.url, TOKEN) as client:
        # Revoking the fuzzer's own token would turn every later call into a 401.
        own_tokens = {t["id"] for t in client.tokens.list()}
    failures: list[str] = []
    calls: dict[int, int] = {}  # status class -> count, reported on failure and with -s
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],  # no shrinking: report the first 5xx as found
            )
            def check(case: schemathesis.Case) -> None:
                if case.method == "DELETE" and case.operation.path == "/api/v1/tokens/{token_id}":
                    assume((case.path_parameters or {}).get("token_id") not in own_tokens)
                response = case.call(
                    base_url=fuzz_server.url,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=30,
                )
                calls[response.status_code // 100] = calls.get(response.status_code // 100, 0) + 1
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}\n  query={case.query!r} body={case.body!r:.300}"
                )

            try:
                check()
            except Unsatisfiable:
                # NEGATIVE mode on an operation without inputs: nothing invalid to send.
                continue
            except AssertionError as exc:
                failures.append(f"[{mode.value}] {exc}")
    print(f"fuzzed {len(operations)} operations; responses by status class: {calls}")
    assert sum(calls.values()) >= len(operations) * MAX_EXAMPLES // 2
    assert not failures, (
        "server errors on generated input:\n"
        + "\n".join(failures)
        + (f"\nserver log:\n{fuzz_server.log_tail(30)}")
    )
