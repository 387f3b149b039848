"""Job spec files: loading, overrides and where the code comes from (no server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from plinth.cli._parse import InputError
from plinth.cli._spec import load_spec, prepare_spec

SPEC = {"name": "j", "roles": {"main": {"replicas": 1, "command": ["true"]}}}


def test_load_spec_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: j\nroles: {main: {replicas: 1, command: [true]}}\n")
    assert load_spec(path)["name"] == "j"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: [unclosed\n", "is not valid YAML at line"),
        ("- a\n- b\n", "must be a mapping"),
        ("", "must be a mapping"),
    ],
)
def test_load_spec_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_spec(path)


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_upload_is_relative_to_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "proj" / "src").mkdir(parents=True)
    prepared = prepare_spec({**SPEC, "code": {"upload": "src"}}, tmp_path / "proj", cwd=Path("/"))
    assert prepared.upload_dir == (tmp_path / "proj" / "src").resolve()
    assert prepared.spec["code"] is None


def test_code_option_is_relative_to_cwd_and_wins(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    prepared = prepare_spec(
        {**SPEC, "code": {"git": "https://example.com/r.git", "ref": "main"}},
        Path("/elsewhere"),
        code_dir=Path("here"),
        cwd=tmp_path,
    )
    assert prepared.upload_dir == (tmp_path / "here").resolve()


def test_git_option_makes_local_paths_absolute(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    prepared = prepare_spec(SPEC, tmp_path, git="repo", ref="main", cwd=tmp_path)
    assert prepared.spec["code"] == {"git": str(repo.resolve()), "ref": "main"}
    assert prepared.upload_dir is None


def test_remote_git_urls_pass_through() -> None:
    for url in ("https://example.com/r.git", "git@example.com:org/r.git"):
        prepared = prepare_spec(SPEC, Path("/"), git=url)
        assert prepared.spec["code"] == {"git": url, "ref": "HEAD"}


def test_overrides_do_not_touch_the_input() -> None:
    spec = {**SPEC, "params": {"lr": 0.1, "epochs": 1}}
    prepared = prepare_spec(spec, Path("/"), params={"lr": 0.5}, name="other")
    assert prepared.spec["params"] == {"lr": 0.5, "epochs": 1}
    assert prepared.spec["name"] == "other"
    assert spec["params"] == {"lr": 0.1, "epochs": 1} and spec["name"] == "j"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"code_dir": Path("."), "git": "https://x/r.git"}, "either --code DIR or --git URL"),
        ({"ref": "main"}, "--ref needs --git"),
        ({"code_dir": Path("/no/such/dir")}, "does not exist"),
        ({"git": "no-such-repo-here"}, "neither a URL nor an existing local repository"),
    ],
)
def test_bad_code_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        prepare_spec(SPEC, Path("/"), cwd=Path("/"), **kwargs)


@pytest.mark.parametrize("code", ["./src", {"upload": "x", "git": "y"}, {"s3": "bucket"}])
def test_bad_code_forms_say_what_is_allowed(code: object) -> None:
    with pytest.raises(InputError, match=r"use code: \{upload: DIR\}"):
        prepare_spec({**SPEC, "code": code}, Path("/"))


def test_upload_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="code.upload: directory .* does not exist"):
        prepare_spec({**SPEC, "code": {"upload": "missing"}}, tmp_path)
