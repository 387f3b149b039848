"""Done-when 3 of issue 10: a run whose loss explodes stops with a message naming the
setting to change, applies nothing of the diverged step, and keeps the last good
checkpoint; plus the warm-up ramp and the guard's own rules."""

import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from plinth.train.config import load_config
from plinth.train.stability import DivergenceGuard, base_rate_logloss, warmup_scale
from plinth.train.trainer import Trainer, TrainingDiverged


def test_warmup_ramps_linearly_to_one():
    assert [warmup_scale(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_scale(0, 0) == 1.0


@pytest.mark.parametrize(
    ("losses", "stops_at", "why"),
    [
        ([0.3] * 50, None, None),
        ([0.3, 0.3, float("nan")], 2, "nan"),
        ([0.3, float("inf")], 1, "inf"),
        ([0.3] * 5 + [50.0] * 20, 5, "exploded"),
        ([0.3] * 5 + [1.5] * 20, 6, "exploded"),  # the average needs a second step
        ([5.0] * 2 + [0.3] * 30, None, None),  # early spikes before min_steps are forgiven
    ],
)
def test_guard_rules(losses, stops_at, why):
    g = DivergenceGuard(reference=base_rate_logloss(0.1), explode_factor=3.0, min_steps=5,
                        decay=0.5)
    reasons = [g.check(x) for x in losses]
    hit = next((i for i, r in enumerate(reasons) if r), None)
    assert hit == stops_at
    if why:
        assert why in reasons[hit]


def test_base_rate_logloss():
    assert base_rate_logloss(0.5) == pytest.approx(math.log(2))
    assert base_rate_logloss(0.04) == pytest.approx(0.1679, abs=1e-4)


def _exploding(raw_count_data, config_dict, out, **over):
    # SGD at an absurd rate on the dense weights: the loss explodes within a few steps.
    return config_dict(raw_count_data, out, model="deepfm", warmup_steps=0,
                       dense_optimizer={"kind": "sgd", "lr": 1e4},
                       checkpoint={"every_steps": 2}, **over)


def test_an_exploding_run_stops_naming_the_setting_and_keeps_the_last_good_checkpoint(
        raw_count_data, config_dict, tmp_path):
    cfg = load_config(_exploding(raw_count_data, config_dict, tmp_path))
    tr = Trainer(cfg, log=lambda m: None)
    with pytest.raises(TrainingDiverged) as e:
        tr.fit()
    msg = str(e.value)
    assert "dense_optimizer.lr (now 10000)" in msg and "tables.optimizer.lr" in msg
    assert "warmup_steps" in msg
    assert e.value.step == tr.step + 1  # the diverged step was not applied
    ckpt = e.value.checkpoint
    assert ckpt is not None and str(ckpt) in msg
    assert ckpt.name == f"step-{tr.step - tr.step % 2:08d}"  # nothing written after it
    assert not (tmp_path / "model").exists()  # no package of a diverged model
    # The checkpoint is good: a resumed trainer predicts finite probabilities.
    again = Trainer(cfg, log=lambda m: None)
    assert again.maybe_resume()
    from plinth.data.reader import ParquetReader

    batch = next(ParquetReader(cfg.data_paths("test"), cfg.schema, 50,
                               normalizer=again.normalizer).iter_epoch(0))
    assert np.isfinite(again.predict(batch)).all()


def test_cli_reports_divergence_without_a_traceback(raw_count_data, config_dict, tmp_path):
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(_exploding(raw_count_data, config_dict, tmp_path / "o")))
    r = subprocess.run([sys.executable, "-m", "plinth.train", "local", str(cfg_path)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 3, r.stderr
    assert "training diverged" in r.stderr and "dense_optimizer.lr" in r.stderr
    assert "Traceback" not in r.stderr
