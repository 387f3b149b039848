"""A small synthetic data set shared by the training tests (generated once per session)."""

from pathlib import Path

import pytest

from plinth.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="session")
def ctr_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ctr")
    generate(
        SyntheticSpec(rows=6000, cardinalities=(10, 50, 200, 1000), multi_fields=1, signal=1.5,
                      multi_cardinality=100, numeric=3, interactions=3, seed=7,
                      row_group_size=1000),
        out,
    )
    return out


def _config_dict(data_dir: Path, out: Path, **over) -> dict:
    d = {
        "data": {"train": str(data_dir / "train"), "test": str(data_dir / "test")},
        "schema": str(data_dir / "schema.yaml"),
        "model": "deepfm",
        "embedding_dim": 4,
        "hidden": [16],
        "batch_size": 256,
        "dense_optimizer": {"lr": 0.01},
        "epochs": 1,
        "threads": 1,
        "output_dir": str(out),
        "checkpoint": {"every_steps": None},
        "progress": False,
    }
    d.update(over)
    return d


@pytest.fixture
def config_dict():
    """``config_dict(data, out, **overrides)`` -> a small, fast training config dict."""
    return _config_dict


@pytest.fixture(scope="session")
def raw_count_data(tmp_path_factory) -> Path:
    """Like a real log: raw heavy-tailed counts, no transform declared, 10% of the numeric
    values missing, a 10% positive rate."""
    out = tmp_path_factory.mktemp("raw")
    generate(
        SyntheticSpec(rows=4000, cardinalities=(10, 100, 1000), multi_fields=1,
                      multi_cardinality=100, numeric=3, interactions=2, seed=3, base_ctr=0.1,
                      raw_counts=True, numeric_missing=0.1, declare_log1p=False,
                      row_group_size=1000),
        out,
    )
    return out
