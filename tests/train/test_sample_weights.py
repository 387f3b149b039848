"""Sample weights (the schema's ``weight`` column, written by ``plinth data build``) scale
each sample's share of the training loss: a weight of 2 is a duplicated row."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from plinth.data.reader import DataError, ParquetReader
from plinth.data.schema import Schema
from plinth.train.config import load_config
from plinth.train.trainer import Trainer, training_loss


def _weighted_copy(src: Path, dst: Path, weight_of) -> Path:
    """`src`'s data set with a weight column ``w`` (weight_of(table) -> array) and a schema
    that names it."""
    for split in ("train", "test"):
        (dst / split).mkdir(parents=True)
        for f in sorted((src / split).glob("*.parquet")):
            t = pq.read_table(f)
            pq.write_table(t.append_column("w", weight_of(t)), dst / split / f.name,
                           row_group_size=1000)
    schema = yaml.safe_load((src / "schema.yaml").read_text())
    schema["weight"] = "w"
    (dst / "schema.yaml").write_text(yaml.safe_dump(schema))
    return dst


def _mean_prediction(cfg_dict) -> float:
    cfg = load_config(cfg_dict)
    tr = Trainer(cfg, log=lambda m: None)
    tr.fit()
    batch = next(ParquetReader(cfg.data_paths("test"), cfg.schema, 600,
                               normalizer=tr.normalizer).iter_epoch(0))
    return float(np.mean(tr.predict(batch)))


def test_weighting_positives_raises_the_predicted_rate(ctr_data, config_dict, tmp_path) -> None:
    def nine_per_click(t: pa.Table) -> pa.Array:
        return pc.if_else(pc.equal(t.column("label"), 1), 9.0, 1.0).cast(pa.float32())

    weighted = _weighted_copy(ctr_data, tmp_path / "w", nine_per_click)
    plain = _mean_prediction(config_dict(ctr_data, tmp_path / "a", epochs=2))
    heavy = _mean_prediction(config_dict(weighted, tmp_path / "b", epochs=2))
    rate = float(np.mean(pq.read_table(ctr_data / "train").column("label").to_numpy()))
    # 9x weight on clicks: the weighted click rate is 9r / (9r + 1 - r).
    target = 9 * rate / (9 * rate + 1 - rate)
    assert abs(plain - rate) < abs(plain - target)
    assert abs(heavy - target) < abs(heavy - rate), (rate, target, plain, heavy)


def test_a_weight_of_two_is_a_duplicated_row(ctr_data) -> None:
    schema = Schema.from_dict(yaml.safe_load((ctr_data / "schema.yaml").read_text()))
    batch = next(ParquetReader(sorted((ctr_data / "test").glob("*.parquet")), schema,
                               8).iter_epoch(0))
    logits = torch.linspace(-2, 2, 8)
    batch.weights = np.array([2, 1, 1, 1, 1, 1, 1, 1], dtype=np.float32)
    weighted = training_loss(logits, batch)
    rows = torch.cat([logits[:1], logits])
    labels = np.concatenate([batch.labels[:1], batch.labels])
    dup = torch.nn.functional.binary_cross_entropy_with_logits(rows, torch.from_numpy(labels))
    assert torch.allclose(weighted, dup)
    batch.weights = None
    assert torch.allclose(training_loss(logits, batch),
                          torch.nn.functional.binary_cross_entropy_with_logits(
                              logits, torch.from_numpy(batch.labels)))


def test_missing_weights_count_one_and_bad_ones_are_refused(ctr_data, tmp_path) -> None:
    def with_nulls(t: pa.Table) -> pa.Array:
        return pa.array([None if i % 2 else 3.0 for i in range(t.num_rows)], pa.float32())

    data = _weighted_copy(ctr_data, tmp_path / "n", with_nulls)
    schema = Schema.from_dict(yaml.safe_load((data / "schema.yaml").read_text()))
    batch = next(ParquetReader(sorted((data / "test").glob("*.parquet")), schema,
                               4).iter_epoch(0))
    assert batch.weights.tolist() == [3.0, 1.0, 3.0, 1.0]

    shutil.rmtree(data)
    data = _weighted_copy(ctr_data, tmp_path / "neg",
                          lambda t: pa.array([-1.0] * t.num_rows, pa.float32()))
    schema = Schema.from_dict(yaml.safe_load((data / "schema.yaml").read_text()))
    with pytest.raises(DataError, match="weight column 'w' has 4 negative"):
        next(ParquetReader(sorted((data / "test").glob("*.parquet")), schema,
                           4).iter_epoch(0))
