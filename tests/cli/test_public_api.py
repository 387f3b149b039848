"""The SDK's public surface is deliberate: this pin fails when it changes by accident."""

from __future__ import annotations

import subprocess
import sys

import plinth.client as sdk

PUBLIC = {
    "APIError",
    "AuthError",
    "Client",
    "ConflictError",
    "ConnectionError",
    "CreatedUser",
    "DEFAULT_URL",
    "Event",
    "FileInfo",
    "Group",
    "Job",
    "LogChunk",
    "LogLine",
    "Node",
    "NotFoundError",
    "PlinthError",
    "InvalidInputError",
    "Replica",
    "Resources",
    "TERMINAL_STATES",
    "User",
    "ValidationError",
    "WaitTimeoutError",
}


def test_all_is_pinned() -> None:
    assert set(sdk.__all__) == PUBLIC
    assert len(sdk.__all__) == len(PUBLIC)
    for name in sdk.__all__:
        assert hasattr(sdk, name)


def test_exception_hierarchy() -> None:
    assert issubclass(sdk.APIError, sdk.PlinthError)
    assert issubclass(sdk.ConnectionError, sdk.PlinthError)
    assert issubclass(sdk.WaitTimeoutError, sdk.PlinthError)
    for cls in (sdk.AuthError, sdk.NotFoundError, sdk.ConflictError, sdk.ValidationError):
        assert issubclass(cls, sdk.APIError)


def test_status_codes_map_to_exceptions() -> None:
    from plinth.client._errors import error_for_status

    assert type(error_for_status(401, "x")) is sdk.AuthError
    assert type(error_for_status(403, "x")) is sdk.AuthError
    assert type(error_for_status(404, "x")) is sdk.NotFoundError
    assert type(error_for_status(409, "x")) is sdk.ConflictError
    assert type(error_for_status(422, [])) is sdk.ValidationError
    assert type(error_for_status(413, "x")) is sdk.ValidationError
    assert type(error_for_status(500, "x")) is sdk.APIError


def test_validation_detail_is_rendered_with_field_names() -> None:
    err = sdk.ValidationError(
        422,
        [
            {"loc": ["body", "roles", "w", "replicas"], "msg": "Input should be >= 1"},
            {"loc": ["body", "name"], "msg": "Field required"},
        ],
    )
    assert err.message == "roles.w.replicas: Input should be >= 1; name: Field required"
    assert err.status == 422


def test_client_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_URL", "http://example.invalid:9/")
    monkeypatch.setenv("PLINTH_TOKEN", "abc")
    with sdk.Client() as client:
        assert client.url == "http://example.invalid:9"
        assert client.token == "abc"
    monkeypatch.delenv("PLINTH_URL")
    monkeypatch.delenv("PLINTH_TOKEN")
    with sdk.Client() as client:
        assert client.url == sdk.DEFAULT_URL == "http://127.0.0.1:8321"
        assert client.token is None


def test_cli_starts_without_heavy_imports() -> None:
    code = (
        "import sys, plinth.cli.main, plinth.client\n"
        "heavy = {'torch', 'numba', 'numpy', 'pyarrow', 'fastapi', 'sqlalchemy', 'plinth.server'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
