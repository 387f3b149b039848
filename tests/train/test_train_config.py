"""Malformed training configs get errors that name the key and the fix; CLI exits 2."""

import subprocess
import sys

import pytest
import yaml

from plinth.train.config import ConfigError, load_config


def test_valid_config_resolves_relative_paths(ctr_data, tmp_path):
    cfg_file = ctr_data / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": {"train": "train", "test": "test"},
                                        "schema": "schema.yaml", "model": "fm"}))
    cfg = load_config(cfg_file)
    assert cfg.data_paths("train") == [str(ctr_data / "train")]
    assert cfg.schema.label == "label" and cfg.model == "fm"
    assert cfg.output_path == ctr_data / "runs/train"


@pytest.mark.parametrize(
    ("over", "messages"),
    [
        ({"model": "xgboost"}, ["model:", "'deepfm'", "'xgboost'"]),
        ({"embedding_dim": 0}, ["embedding_dim:", "greater than or equal to 1"]),
        ({"batch_size": "big"}, ["batch_size:", "integer"]),
        ({"tables": {"optimizer": {"kind": "rmsprop"}}}, ["tables.optimizer.kind:"]),
        ({"tables": {"eviction": {"max_rows": -5}}}, ["tables.eviction.max_rows:"]),
        ({"learning_rate": 0.1}, ["learning_rate: unknown key"]),
        ({"data": {"test": "x"}}, ["data.train: required"]),
        ({"schema": {"label": "y", "categorical": ["a", "a"]}}, ["schema:", "more than once"]),
        ({"schema": "/no/such/schema.yaml"}, ["schema:", "cannot read schema file"]),
        ({"hidden": [16, 0]}, ["hidden:", "layer sizes must be >= 1"]),
        ({"tables": {"admission": {"compete": True}}},
         ["tables:", "admission.compete needs eviction.max_rows"]),
    ],
)
def test_bad_configs_say_what_to_fix(ctr_data, config_dict, tmp_path, over, messages):
    with pytest.raises(ConfigError) as e:
        load_config(config_dict(ctr_data, tmp_path, **over))
    for m in messages:
        assert m in str(e.value)


def test_schema_given_twice_or_not_at_all(ctr_data, config_dict, tmp_path):
    d = config_dict(ctr_data, tmp_path)
    d["label"] = "label"
    with pytest.raises(ConfigError, match="use one of the two"):
        load_config(d)
    d = config_dict(ctr_data, tmp_path)
    del d["schema"]
    with pytest.raises(ConfigError, match="schema: required"):
        load_config(d)


def test_cli_reports_config_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {train: nowhere}\nlabel: y\ncategorical: [a]\nepochs: 0\n")
    r = subprocess.run([sys.executable, "-m", "plinth.train", "local", str(bad), "--json"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert "epochs:" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "plinth.train", "local", str(tmp_path / "no.yaml")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "cannot read config" in r.stderr
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    r = subprocess.run([sys.executable, "-m", "plinth.train", "local", str(notmap)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "mapping" in r.stderr


def test_cli_reports_missing_data_clearly(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {train: nowhere/*.parquet}\nlabel: y\ncategorical: [a]\n")
    r = subprocess.run([sys.executable, "-m", "plinth.train", "local", str(cfg)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "no files match" in r.stderr and "Traceback" not in r.stderr
