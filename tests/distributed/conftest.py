"""Small synthetic data and a small training config for the distributed tests."""

from pathlib import Path
from typing import Any

import pytest

from plinth.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="session")
def ps_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ps-ctr")
    generate(SyntheticSpec(rows=4000, cardinalities=(10, 50, 200, 1000), multi_fields=1,
                           signal=1.5, multi_cardinality=100, numeric=2, interactions=2,
                           seed=11, row_group_size=500), out)
    return out


def small_config(data: Path, out: Path, **over: Any) -> dict[str, Any]:
    """A fast deepfm config over ``data`` writing to ``out`` (keys overridable)."""
    d: dict[str, Any] = {
        "data": {"train": str(data / "train"), "test": str(data / "test")},
        "schema": str(data / "schema.yaml"), "model": "deepfm", "embedding_dim": 4,
        "hidden": [16], "batch_size": 256, "dense_optimizer": {"lr": 0.01}, "epochs": 1,
        "threads": 1, "output_dir": str(out), "checkpoint": {"every_steps": None},
        "progress": False,
    }
    d.update(over)
    return d
