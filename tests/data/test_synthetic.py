"""Synthetic generator: deterministic, split sizes, planted signal, Bayes metrics, CLI."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from plinth.data.metrics import auc, logloss
from plinth.data.schema import Schema
from plinth.data.synthetic import SyntheticSpec, default_cardinalities, generate


def _spec(**kw):
    base = {"rows": 6000, "cardinalities": (50, 500, 5000), "multi_fields": 1,
            "multi_cardinality": 300, "numeric": 2, "interactions": 2, "seed": 3}
    base.update(kw)
    return SyntheticSpec(**base)


def test_generate_is_deterministic_and_reports_bayes_metrics(tmp_path):
    a = generate(_spec(), tmp_path / "a")
    b = generate(_spec(), tmp_path / "b")
    ta = pq.read_table(tmp_path / "a" / "train")
    tb = pq.read_table(tmp_path / "b" / "train")
    assert ta.equals(tb)
    assert a["bayes_auc"] == b["bayes_auc"]
    assert a["train_rows"] == 5400 and a["test_rows"] == 600
    test = pq.read_table(tmp_path / "a" / "test")
    assert test.num_rows == 600 and ta.num_rows == 5400
    y = test["label"].to_numpy()
    p = test["p_true"].to_numpy()
    assert a["bayes_auc"] == pytest.approx(auc(y, p))
    assert a["bayes_logloss"] == pytest.approx(logloss(y, p), rel=1e-5)
    # The planted model carries signal and the bias is calibrated to the base CTR.
    assert a["bayes_auc"] > 0.65
    assert 0.15 < float(ta["label"].to_numpy().mean()) < 0.35
    assert json.loads((tmp_path / "a" / "stats.json").read_text())["test_rows"] == 600
    s = Schema.from_yaml(tmp_path / "a" / "schema.yaml")
    assert s.categorical_names == ["c1", "c2", "c3", "m1"] and s.numeric_names == ["n1", "n2"]


def test_ids_follow_the_cardinality_and_are_skewed(tmp_path):
    generate(_spec(rows=20000), tmp_path)
    t = pq.read_table(tmp_path / "train")
    c1 = t["c1"].to_numpy()
    assert len(np.unique(c1)) <= 50
    _, counts = np.unique(t["c3"].to_numpy(), return_counts=True)
    assert counts.max() > 20 * np.median(counts)  # Zipf: a heavy head
    lengths = np.diff(t["m1"].combine_chunks().offsets.to_numpy())
    assert lengths.min() >= 1 and 2.0 < lengths.mean() < 4.0


def test_default_cardinalities_sum_close_to_total():
    cards = default_cardinalities(26, 10_000_000)
    assert len(cards) == 26 and abs(sum(cards) - 10_000_000) < 10_000_000 * 0.01
    assert min(cards) < 100
    assert max(cards) > 1_000_000


def test_cli_writes_data_and_rejects_bad_input(tmp_path):
    out = tmp_path / "d"
    r = subprocess.run(
        [sys.executable, "-m", "plinth.data.synthetic", "--rows", "3000", "--out", str(out),
         "--categorical", "3", "--cardinality-total", "1000", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["train_rows"] == 2700 and 0.5 < stats["bayes_auc"] < 1
    r = subprocess.run(
        [sys.executable, "-m", "plinth.data.synthetic", "--rows", "100", "--out", str(out),
         "--test-fraction", "1.5"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 2 and "test_fraction" in r.stderr and "Traceback" not in r.stderr


def test_profiles_look_like_real_logs(tmp_path):
    import pyarrow.parquet as pq
    import yaml

    from plinth.data.synthetic import PROFILES, generate, profile

    for name, want_rate in (("criteo_like", 0.04), ("rare_clicks", 0.01)):
        spec = profile(name, 4000, seed=1)
        assert 20 <= len(spec.cardinalities) + spec.multi_fields + spec.numeric <= 40
        assert min(spec.cardinalities) == 10 and max(spec.cardinalities) >= 5_000_000
        stats = generate(spec, tmp_path / name)
        assert 0.5 < stats["bayes_auc"] < 1
        t = pq.read_table(tmp_path / name / "train")
        assert abs(t.column("label").to_numpy().mean() - want_rate) < 0.02
        n1 = t.column("n1")
        assert n1.null_count > 0  # missing values
        vals = n1.drop_null().to_numpy()
        assert vals.min() == 0 and (vals == vals.round()).all()  # raw counts
        skew = ((vals - vals.mean()) ** 3).mean() / vals.std() ** 3
        assert skew > 2  # a heavy right tail
        schema = yaml.safe_load((tmp_path / name / "schema.yaml").read_text())
        assert all(isinstance(f, str) for f in schema["numeric"])  # no transform declared
    assert "dense_engagement" in PROFILES and profile("dense_engagement", 10).base_ctr == 0.2
