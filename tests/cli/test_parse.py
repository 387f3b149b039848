"""Pure parsing of command-line values (no server)."""

from __future__ import annotations

import pytest

from plinth.cli._parse import InputError, parse_kv_list, parse_params, parse_quantities


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("cpu=8", {"cpu": 8.0}),
        ("cpu=8,memory=32Gi,gpu=2", {"cpu": 8.0, "memory": "32Gi", "gpu": 2}),
        (" cpu = 0.5 , memory=4096 ", {"cpu": 0.5, "memory": 4096}),
        ("memory=1G", {"memory": "1G"}),
        ("gpu=0", {"gpu": 0}),
    ],
)
def test_quantities_parse(text: str, want: dict) -> None:
    assert parse_quantities(text, "--quota") == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty value"),
        ("cpu8", "'cpu8' is not key=value"),
        ("cpu=8,,gpu=1", "empty item"),
        ("=8", "is not key=value"),
        ("cpu=1,cpu=2", "'cpu' is given twice"),
        ("cpus=8", "unknown resource 'cpus'; use cpu, memory, gpu"),
        ("cpu=lots", "not a number of cores"),
        ("cpu=-1", "must be a finite number >= 0"),
        ("cpu=nan", "must be a finite number >= 0"),
        ("gpu=1.5", "whole number of devices"),
        ("memory=4GB", "not a size"),
        ("memory=", "memory has no value"),
    ],
)
def test_quantities_errors_name_option_and_fix(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_quantities(text, "--quota")
    assert str(info.value).startswith("--quota: ")
    assert message in str(info.value)


def test_kv_list_keeps_values_verbatim() -> None:
    assert parse_kv_list("a=1,b=x=y", "--opt") == {"a": "1", "b": "x=y"}


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("lr=0.01", 0.01),
        ("epochs=3", 3),
        ("debug=true", True),
        ("name=ctr", "ctr"),
        ("empty=", ""),
        ("tags=[a, b]", ["a", "b"]),
        ("opts={x: 1}", {"x": 1}),
        ("text=a: b", "a: b"),
        ("day=2026-01-02", "2026-01-02"),
        ("none=null", None),
        ("path=/data/x=1", "/data/x=1"),
        ("quoted='007'", "007"),
    ],
)
def test_params_are_yaml_scalars(item: str, value: object) -> None:
    key = item.split("=", 1)[0]
    assert parse_params([item]) == {key: value}


def test_params_later_wins() -> None:
    assert parse_params(["lr=1", "lr=2"]) == {"lr": 2}


@pytest.mark.parametrize(
    ("item", "message"),
    [("lr", "is not key=value"), ("=1", "is not key=value"), ("a b=1", "must not contain spaces")],
)
def test_params_errors(item: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_params([item])
