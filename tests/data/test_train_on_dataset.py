"""`plinth train local` trains on a built dataset through its schema; serving derives the
same bucket and cross ids from raw records."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from plinth.cli.main import app
from plinth.data import manifest as mf
from plinth.data.build import build
from plinth.data.rawlogs import RawLogSpec, generate_raw_logs
from plinth.data.spec import load_spec

runner = CliRunner()


@pytest.mark.slow
def test_train_local_on_a_built_dataset(tmp_path):
    generate_raw_logs(RawLogSpec(impressions=6_000, users=300, items=100, user_snapshots=900,
                                 item_snapshots=300, base_ctr=0.2, truth=False), tmp_path)
    spec = load_spec(tmp_path / "spec.yaml")
    build(spec)
    m = mf.read_manifest(spec.output)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": "dataset"}, "schema": "dataset/schema.yaml", "model": "fm",
        "embedding_dim": 4, "batch_size": 512, "output_dir": "runs", "progress": False,
        "checkpoint": {"every_steps": None},
    }))
    r = runner.invoke(app, ["train", "local", str(config), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["train_samples"] == m["rows"]

    from plinth.train.package import ModelPackage

    package = ModelPackage.load(result["package"])
    assert package.schema.fingerprint() == m["schema_hash"]
    rows = pl.read_parquet(mf.dataset_files(spec.output, m)).head(50)
    raw = rows.drop("price_q", "segment_x_category").to_dicts()  # serving sees raw fields
    from_raw = package.predict_records(raw)
    from_built = package.predict_table(rows.to_arrow())
    np.testing.assert_allclose(from_raw, from_built, rtol=1e-6)
