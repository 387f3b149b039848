"""No traceback for any spec or parameter: anchor cycles, deep nesting, NaN, dates,
non-JSON types and alias bombs each give one ``Error:`` line naming the problem, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from plinth.cli._parse import InputError, check_plain_json
from plinth.cli.main import app

ROLES = "roles: {main: {command: [x]}}\n"
LAUGHS = "".join(
    f"b{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10) if i else '1, 1, 1, 1, 1, 1, 1, 1, 1, 1'}]\n"
    for i in range(7)
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: x\nloop: &a [*a]\n" + ROLES, "contains itself"),
        ("name: x\nparams: {a: " + "[" * 5000 + "]" * 5000 + "}\n" + ROLES, "nested too deeply"),
        ("name: x\nparams: {a: " + "[" * 100 + "]" * 100 + "}\n" + ROLES, "nested more than 64"),
        ("name: x\nroles: {main: {command: [x], resources: {cpu: .nan}}}\n",
         "roles.main.resources.cpu is nan"),
        ("name: x\nparams: {day: 2024-01-01}\n" + ROLES, "params.day is a date"),
        ("name: x\nparams: {blob: !!binary aGVsbG8=}\n" + ROLES, "params.blob is binary data"),
        ("name: x\nparams: {s: !!set {a: null}}\n" + ROLES, "params.s is a set"),
        ("name: x\nparams: {1: one}\n" + ROLES, "key 1 (int)"),
        ("name: x\n" + LAUGHS + ROLES, "more than 1000000 values"),
        ("name: x\nparams: {a: [1, 2\n" + ROLES, "not valid YAML at line"),
    ],
    ids=["anchor-cycle", "nested-5000", "nested-100", "nan", "date", "binary", "set",
         "int-key", "alias-bomb", "broken"],
)  # fmt: skip
def test_bad_specs_give_one_error_line_and_exit_2(tmp_path: Path, text: str, words: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(text)
    result = CliRunner().invoke(
        app, ["--url", "http://127.0.0.1:9", "--token", "x", "job", "submit", str(spec)]
    )
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], lines


@pytest.mark.parametrize(
    ("param", "words"),
    [("d=[2024-01-01]", "--param d: [0] is a date"), ("n=[.inf]", "not a finite number")],
)
def test_bad_params_give_one_error_line(tmp_path: Path, param: str, words: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\n" + ROLES)
    result = CliRunner().invoke(
        app, ["--url", "http://127.0.0.1:9", "--token", "x", "job", "submit", str(spec),
              "--param", param],
    )  # fmt: skip
    assert result.exit_code == 2 and words in result.output, result.output


def test_shared_aliases_that_are_not_cycles_are_fine() -> None:
    shared = [1, 2]
    check_plain_json({"a": shared, "b": shared, "c": {"d": [shared]}}, "spec")
    with pytest.raises(InputError, match="not a finite number"):
        check_plain_json({"x": [float("-inf")]}, "spec")
