"""``executor: {kind: ray, ...}`` in the server configuration: parsed, or refused with
the key and the fix; an unreachable cluster is a clear error, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plinth.config import ConfigError, RayExecutorConfig, load_config


def _load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


def test_ray_executor_mapping(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        "executor: {kind: ray, address: '10.0.0.1:6379', node_ip_address: 10.0.0.2,\n"
        "           placement_timeout: 2m}\n",
    )
    assert cfg.executor == "ray"
    assert cfg.ray == RayExecutorConfig(
        address="10.0.0.1:6379", node_ip_address="10.0.0.2", placement_timeout=120.0
    )


@pytest.mark.parametrize("text", ["", "executor: local\n", "executor: {kind: local}\n"])
def test_the_local_executor_stays_the_default(tmp_path: Path, text: str) -> None:
    cfg = _load(tmp_path, text)
    assert cfg.executor == "local" and cfg.ray is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executor: {kind: slurm}\n", "executor.kind must be one of local, ray, got 'slurm'"),
        ("executor: {address: x}\n", "executor.kind must be one of"),
        ("executor: {kind: ray, adress: x}\n", "ray.adress: Extra inputs are not permitted"),
        ("executor: {kind: local, address: x}\n", "executor 'local' takes no options"),
        (
            "executor: {kind: ray}\nnodes: [{name: a, cpu: 1, memory: 1Gi}]\n",
            "takes its nodes from the Ray cluster: remove `nodes:`",
        ),
    ],
)
def test_bad_executor_config_says_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "executor: {kind: ray, address: '127.0.0.1:9', node_ip_address: 127.0.0.1}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "plinth.server", "--port", "0",
         "--config", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PLINTH_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot connect to the Ray cluster at '127.0.0.1:9'" in done.stderr
    assert "Traceback" not in done.stderr
