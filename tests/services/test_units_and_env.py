"""Quantities and the replica environment contract (pure parts)."""

from __future__ import annotations

import json

import pytest

from plinth.services.replica_env import ReplicaAddress, replica_env
from plinth.services.units import parse_duration_s, parse_memory_mib, parse_size_bytes


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (512, 512), ("512Mi", 512), ("4Gi", 4096), ("1G", 954), ("1.5Gi", 1536), ("1024Ki", 1),
        ("512", 512),  # a bare number is MiB, given as a number or as a string
        (0.5, 1), ("1Ki", 1), ("1k", 1), ("1Ti", 1 << 20), (" 4 Gi ", 4096), (0, 0),
    ],
)  # fmt: skip
def test_memory(value: object, mib: int) -> None:
    assert parse_memory_mib(value) == mib  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["4GB", "-1", "abc", "", True, float("inf"), float("nan"), 2**50, "4gi", "1m", None]
)
def test_memory_refused_with_the_accepted_forms(bad: object) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory_mib(bad)  # type: ignore[arg-type]


def test_memory_message_lists_the_units() -> None:
    with pytest.raises(ValueError, match=r"memory '4GB' is not understood.*'4Gi'.*Ki, Mi, Gi"):
        parse_memory_mib("4GB")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1000, 1000), ("1000", 1000),  # a bare number is bytes
        ("100Mi", 100 * 2**20), ("1Gi", 2**30), ("1.5Ki", 1536), ("100k", 100_000),
        ("100K", 100_000), ("1G", 10**9), ("2T", 2 * 10**12),
        ("1.1Ki", 1127), (0.5, 1), ("0.001k", 1), (0, 0),  # exact, fractions round up
        ("1048576Ti", 2**60),
    ],
)  # fmt: skip
def test_size_bytes_exact(value: object, size: int) -> None:
    assert parse_size_bytes(value) == size  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["4GB", "-1", -1, "1e3", "", False, float("inf"), 2**60 + 1])
def test_size_refused_naming_what(bad: object) -> None:
    with pytest.raises(ValueError, match="max_body"):
        parse_size_bytes(bad, what="max_body")  # type: ignore[arg-type]


def test_memory_is_the_size_parser_in_mib() -> None:
    for text in ("1G", "1.1Ki", "3Mi", "7", "0.25Gi"):
        assert parse_memory_mib(text) == -(-parse_size_bytes(text, bare_unit="Mi") // 2**20)


@pytest.mark.parametrize(
    ("value", "s"),
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1d", 86400.0), ("0.5s", 0.5)],
)
def test_duration(value: object, s: float) -> None:
    assert parse_duration_s(value) == s  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["2 hours", 0, -3, "1w", float("nan")])
def test_duration_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(bad)  # type: ignore[arg-type]


ADDRS = [
    ReplicaAddress("ps", 0, "127.0.0.1", 7000),
    ReplicaAddress("worker", 1, "127.0.0.1", 7002),
    ReplicaAddress("worker", 0, "127.0.0.1", 7001),
]


def _env(role: str, replica: int, addrs: list[ReplicaAddress] = ADDRS) -> dict[str, str]:
    return replica_env(
        workload_id="job-1", role=role, replica=replica, attempt=2, addresses=addrs,
        params={"lr": 0.1}, url="http://x", token="t", role_env={"PLINTH_ROLE": "spoof", "A": "b"},
    )  # fmt: skip


def test_worker_env_has_rendezvous_and_contract_wins() -> None:
    env = _env("worker", 1)
    assert json.loads(env["PLINTH_ROLES"]) == {
        "ps": ["127.0.0.1:7000"], "worker": ["127.0.0.1:7001", "127.0.0.1:7002"],
    }  # fmt: skip
    assert env["PLINTH_ROLE"] == "worker" and env["A"] == "b"
    assert (env["PLINTH_PORT"], env["PLINTH_REPLICA"], env["PLINTH_ATTEMPT"]) == ("7002", "1", "2")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"], env["RANK"], env["WORLD_SIZE"]) == (
        "127.0.0.1", "7001", "1", "2",
    )  # fmt: skip
    assert json.loads(env["PLINTH_PARAMS"]) == {"lr": 0.1}
    assert env["PLINTH_TOKEN"] == "t" and env["PLINTH_URL"] == "http://x"


def test_ps_gets_no_torch_rendezvous_but_a_single_role_does() -> None:
    assert "RANK" not in _env("ps", 0)
    single = [ReplicaAddress("main", 0, "h", 1), ReplicaAddress("main", 1, "h", 2)]
    env = _env("main", 1, single)
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("1", "2", "1")


def test_a_size_with_thousands_of_digits_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="not understood"):
        parse_memory_mib("0." + "0" * 5000 + "1Ti")
