"""`python -m plinth.train local` killed with SIGKILL after a checkpoint resumes from it."""

import json
import os
import signal
import subprocess
import sys
import time

import yaml


def _wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_then_restart_resumes_from_checkpoint(ctr_data, config_dict, tmp_path):
    out = tmp_path / "run"
    cfg = config_dict(ctr_data, out, model="deepfm", batch_size=64, epochs=10,
                      checkpoint={"every_steps": 20, "keep": 2})
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "plinth.train", "local", str(cfg_file), "--json"]
    latest = out / "checkpoints" / "LATEST"

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(latest.exists, 300, "the first checkpoint", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    first_ckpt = latest.read_text().strip()
    saved_step = int(first_ckpt.split("-")[1])
    assert saved_step >= 20
    assert not (out / "model").exists()  # the run never got to export

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "resumed from checkpoint" in r.stderr
    assert res["resumed_from_step"] >= saved_step
    steps_per_epoch = -(-5400 // 64)
    assert res["steps"] == 10 * steps_per_epoch  # the whole run, not the rest on top
    assert res["train_samples"] == 10 * 5400
    assert res["auc"] > 0.6 and res["samples_per_s"] > 0 and res["logloss"] > 0
    assert (out / "model" / "model.json").exists()
    kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert len(kept) == 2 and kept[-1] == f"step-{res['steps']:08d}"


def test_sigterm_checkpoints_and_exits_143_then_resumes(ctr_data, config_dict, tmp_path):
    out = tmp_path / "run"
    cfg = config_dict(ctr_data, out, model="lr", batch_size=64, epochs=20,
                      checkpoint={"every_steps": 50, "keep": 3})
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "plinth.train", "local", str(cfg_file), "--json"]
    latest = out / "checkpoints" / "LATEST"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(latest.exists, 300, "the first checkpoint", proc)  # the handler is installed
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    stopped_at = int(latest.read_text().strip().split("-")[1])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["resumed_from_step"] == stopped_at
    assert res["steps"] == 20 * -(-5400 // 64)
