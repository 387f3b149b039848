"""Argument parsing and error reporting through Typer's CliRunner (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from plinth.cli.local_server import free_port
from plinth.cli.main import app

runner = CliRunner()


def invoke(args: list[str], **env: str) -> object:
    # An unused port: any request would fail to connect, so parsing errors must come first.
    base = {"PLINTH_URL": f"http://127.0.0.1:{free_port()}", "PLINTH_TOKEN": "t"}
    return runner.invoke(app, args, env={**base, **env})


def test_help_lists_the_command_groups() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for command in ("server", "job", "group", "user", "node", "whoami", "train"):
        assert command in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["group", "create", "g", "--quota", "cpu8"], "--quota: 'cpu8' is not key=value"),
        (["group", "create", "g", "--quota", "tpu=1"], "--quota: unknown resource 'tpu'"),
        (
            ["group", "create", "g", "--quota", "cpu=1", "--borrow-limit", "gpu=x"],
            "--borrow-limit: gpu='x' must be a whole number",
        ),
        (
            ["user", "create", "u", "--group", "g", "--cap", "memory=lots"],
            "--cap: memory='lots' is not a size",
        ),
        (["group", "update", "g"], "nothing to change"),
    ],
)
def test_bad_quantities_are_clear_errors(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_submit_input_errors(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: j\nroles: {main: {replicas: 1, command: [true]}}\n")
    cases = [
        (["job", "submit", str(tmp_path / "missing.yaml")], "does not exist"),
        (
            ["job", "submit", str(spec), "--code", str(tmp_path), "--git", "https://x/r.git"],
            "either --code DIR or --git URL",
        ),
        (["job", "submit", str(spec), "--ref", "main"], "--ref needs --git"),
        (["job", "submit", str(spec), "--param", "lr"], "--param: 'lr' is not key=value"),
        (["job", "submit", str(spec), "--code", str(tmp_path / "nope")], "does not exist"),
    ]
    for args, message in cases:
        result = invoke(args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


def test_usage_errors_exit_2() -> None:
    result = invoke(["job", "submit"])
    assert result.exit_code == 2
    assert "give a job spec file (SPEC.yaml) or --template NAME" in result.stderr
    assert invoke(["job", "list", "-o", "yaml"]).exit_code == 2


def test_unreachable_server_is_one_clear_line() -> None:
    port = free_port()
    result = invoke(["job", "list"], PLINTH_URL=f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert f"Error: cannot reach the Plinth server at http://127.0.0.1:{port}" in result.stderr
    assert "plinth server" in result.stderr and "PLINTH_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_url_option_beats_environment() -> None:
    port = free_port()
    result = invoke(["--url", f"127.0.0.1:{port}", "node", "list"])
    assert result.exit_code == 1
    assert f"http://127.0.0.1:{port}" in result.stderr


def test_server_config_must_exist(tmp_path: Path) -> None:
    result = invoke(["server", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "Error: --config:" in result.stderr


def test_train_local_config_must_exist(tmp_path: Path) -> None:
    result = invoke(["train", "local", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "training config" in result.stderr


def test_train_local_delegates_to_the_trainer(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("not_a_training_key: 1\n")
    result = invoke(["train", "local", str(config), "--json"])
    # The trainer's own exit code for an invalid config, and its message.
    assert result.exit_code == 2
    assert "error" in result.stderr.lower() and "Traceback" not in result.stderr


def test_server_with_an_invalid_config_says_so(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("nodes: 5\n")
    result = invoke(
        ["server", "--port", str(free_port()), "--config", str(config)],
        PLINTH_HOME=str(tmp_path / "home"),
    )
    assert result.exit_code == 2
    assert "Error: invalid server configuration:" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    from plinth import __version__

    result = invoke(["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"plinth {__version__}"
