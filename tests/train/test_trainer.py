"""Trainer: every model learns; checkpoint -> restore and package -> load predict identically;
a delta holds exactly the changed rows; resuming with another architecture is refused."""

import json

import numpy as np
import pytest

from plinth.data.reader import ParquetReader
from plinth.train.config import ConfigError, load_config
from plinth.train.models import MODELS
from plinth.train.package import ModelPackage
from plinth.train.trainer import Trainer


def _test_batch(cfg, n=500, normalizer=None):
    return next(ParquetReader(cfg.data_paths("test"), cfg.schema, n,
                              normalizer=normalizer).iter_epoch(0))


@pytest.mark.parametrize(
    ("model", "tables"),
    [(m, {}) for m in MODELS]
    + [("deepfm", {"linear_optimizer": {"kind": "ftrl", "lr": 0.05, "beta": 0.001},
                   "sharing": "per_field"})],
)
def test_every_model_trains_and_beats_chance(ctr_data, config_dict, tmp_path, model, tables):
    cfg = load_config(config_dict(ctr_data, tmp_path, model=model, epochs=2, tables=tables))
    tr = Trainer(cfg, log=lambda m: None)
    res = tr.fit()
    if tables:  # separate first-order tables, one per field
        assert "linear.c1" in tr.tables and tr.tables["linear.c1"].dim == 1
        assert tr.tables["emb.c1"].dim == 4
    elif model in ("fm", "deepfm", "wide_deep"):  # first-order weights fused as a column
        assert set(tr.tables) == {"emb"} and tr.tables["emb"].dim == 5
    assert res["steps"] == 2 * 22  # 5400 train rows / 256 -> 22 batches per epoch
    assert res["train_samples"] == 2 * 5400 and res["test_samples"] == 600
    assert res["auc"] > 0.6, res
    assert 0 < res["logloss"] < 0.69
    assert (tmp_path / "model" / "model.json").exists()


def test_checkpoint_restore_gives_identical_predictions(ctr_data, config_dict, tmp_path):
    cfg = load_config(config_dict(ctr_data, tmp_path, model="deepfm",
                                  tables={"optimizer": {"kind": "adam", "lr": 0.01}}))
    tr = Trainer(cfg, log=lambda m: None)
    reader = ParquetReader(cfg.data_paths("train"), cfg.schema, 256)
    for i, b in enumerate(reader.iter_epoch(0)):
        tr.train_step(b)
        tr.position = reader.position
        if i == 9:
            break
    ckpt = tr.save_checkpoint()
    assert (ckpt.parent / "LATEST").read_text() == ckpt.name
    batch = _test_batch(cfg)
    want = tr.predict(batch)

    restored = Trainer(cfg, log=lambda m: None)
    assert restored.maybe_resume()
    assert (restored.step, restored.position) == (10, 2560)
    np.testing.assert_array_equal(restored.predict(batch), want)
    for name, t in tr.tables.items():
        assert len(restored.tables[name]) == len(t)
    # Training on from both gives the same model again: optimizer state was restored too.
    nxt = next(ParquetReader(cfg.data_paths("train"), cfg.schema, 256).iter_epoch(0, 2560))
    tr.train_step(nxt)
    restored.train_step(nxt)
    np.testing.assert_allclose(restored.predict(batch), tr.predict(batch), rtol=1e-5, atol=1e-6)


def test_resume_with_another_architecture_is_refused(ctr_data, config_dict, tmp_path):
    cfg = load_config(config_dict(ctr_data, tmp_path))
    Trainer(cfg, log=lambda m: None).save_checkpoint()
    other = load_config(config_dict(ctr_data, tmp_path, embedding_dim=8))
    with pytest.raises(ConfigError, match="different embedding_dim"):
        Trainer(other, log=lambda m: None).maybe_resume()


def test_package_and_delta(ctr_data, config_dict, tmp_path):
    cfg = load_config(config_dict(ctr_data, tmp_path, model="wide_deep"))
    tr = Trainer(cfg, log=lambda m: None)
    batches = list(ParquetReader(cfg.data_paths("train"), cfg.schema, 256).iter_epoch(0))
    for b in batches[:8]:
        tr.train_step(b)
    tr.export_delta()  # resets change tracking
    pkg_dir = tr.export_package(tmp_path / "pkg", metrics={"auc": 0.5})
    test = _test_batch(cfg)
    pkg = ModelPackage.load(pkg_dir)
    np.testing.assert_array_equal(pkg.predict_batch(test), tr.predict(test))
    manifest = json.loads((pkg_dir / "model.json").read_text())
    assert manifest["architecture"]["model"] == "wide_deep"
    assert manifest["tables"]["emb"]["rows"] == len(tr.tables["emb"])
    assert manifest["metadata"]["step"] == 8

    # One more step changes exactly the rows of that batch's ids.
    b = batches[8]
    tr.train_step(b)
    delta = tr.export_delta()
    z = np.load(delta / "tables" / "emb.npz")
    assert set(z["ids"].tolist()) == set(np.unique(b.sparse.values()).tolist())
    np.testing.assert_array_equal(
        z["values"], tr.tables["emb"].pull(z["ids"], train=False)
    )
    assert json.loads((delta / "delta.json").read_text())["seq"] == 2
    assert not (pkg.predict_batch(test) == tr.predict(test)).all()
    pkg.apply_delta(delta)
    np.testing.assert_array_equal(pkg.predict_batch(test), tr.predict(test))


def test_package_predicts_from_feature_records(ctr_data, config_dict, tmp_path):
    cfg = load_config(config_dict(ctr_data, tmp_path, model="lr"))
    res = Trainer(cfg, log=lambda m: None).fit()
    pkg = ModelPackage.load(res["package"])
    import pyarrow.parquet as pq

    rows = pq.read_table(ctr_data / "test").slice(0, 5).to_pylist()
    from_records = pkg.predict_records(rows)
    from_batch = pkg.predict_batch(_test_batch(cfg, 5, pkg.normalizer))
    np.testing.assert_allclose(from_records, from_batch, rtol=1e-6)
    partial = pkg.predict_records([{"c1": rows[0]["c1"]}])  # missing features are nulls
    assert partial.shape == (1,) and 0 < partial[0] < 1


def test_deltas_replayed_on_the_initial_package_reproduce_the_final_model(
    ctr_data, config_dict, tmp_path
):
    cfg = load_config(config_dict(
        ctr_data, tmp_path, model="deepfm",
        tables={"eviction": {"max_rows": 300, "policy": "lru"}},  # evictions in the deltas too
        checkpoint={"every_steps": 10}, export={"delta_every_steps": 7},
    ))
    tr = Trainer(cfg, log=lambda m: None)
    initial = tr.export_package(tmp_path / "initial")
    res = tr.fit()
    deltas = sorted((tmp_path / "deltas").glob("delta-*"))
    # every 7 steps, plus one before each checkpoint (10, 20) and at the end (22)
    assert [json.loads((d / "delta.json").read_text())["step"] for d in deltas] == [
        7, 10, 14, 20, 21, 22
    ]
    assert sum(json.loads((d / "delta.json").read_text())["tables"]["emb"]["evicted"]
               for d in deltas) > 0
    pkg = ModelPackage.load(initial)
    for d in deltas:
        pkg.apply_delta(d)
    test = _test_batch(cfg)
    np.testing.assert_array_equal(pkg.predict_batch(test), tr.predict(test))
    np.testing.assert_array_equal(
        pkg.predict_batch(test), ModelPackage.load(res["package"]).predict_batch(test)
    )
