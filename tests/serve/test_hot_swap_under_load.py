"""Done-when 2 (serving part): under constant load on loopback, a version swap then ten
deltas give zero failed requests, and every answer equals the offline prediction of the
package (with the same deltas applied) that the answer says produced it."""

import threading
import time

import numpy as np
import pytest

from plinth.train.package import ModelPackage

from .conftest import start_server, stop_server

pytestmark = pytest.mark.slow


def _offline(trained, probe):
    """(version, delta_seq) -> offline predictions for `probe`."""
    want = {("1", 0): ModelPackage.load(trained.v1).predict_records(probe)}
    pkg = ModelPackage.load(trained.v2)
    want[("2", 0)] = pkg.predict_records(probe)
    for d in trained.deltas:
        pkg.apply_delta(d)
        want[("2", pkg.delta_seq)] = pkg.predict_records(probe)
    return want


def test_version_swap_and_ten_deltas_under_load_fail_nothing(trained, tmp_path):
    probe = trained.records[:100]  # one ranking request: 100 candidates
    want = _offline(trained, probe)
    seqs = [seq for (v, seq) in want if v == "2" and seq]
    assert len(seqs) == 10
    s = start_server(trained.v1, tmp_path, "--version", "1")
    stop = threading.Event()
    answers: list[tuple[float, dict]] = []  # (time sent, answer)
    applied: list[tuple[float, tuple[str, int]]] = []  # (time the swap returned, state)
    failures: list[str] = []

    def load() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = s.client.post("/predict", json=probe)
            except Exception as e:  # noqa: BLE001 - a transport error is a failed request
                failures.append(repr(e))
                continue
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text}")
            else:
                answers.append((sent, r.json()))

    workers = [threading.Thread(target=load) for _ in range(3)]
    try:
        for w in workers:
            w.start()
        control = s.client
        r = control.post("/control/version", json={"path": str(trained.v2), "version": "2"})
        assert r.status_code == 200, r.text
        applied.append((time.monotonic(), ("2", 0)))
        assert control.post("/predict", json=probe).json()["version"] == "2"
        for d, seq in zip(trained.deltas, seqs, strict=True):
            r = control.post("/control/delta", json={"path": str(d)})
            assert r.status_code == 200 and r.json()["delta_seq"] == seq, r.text
            applied.append((time.monotonic(), ("2", seq)))
            after = control.post("/predict", json=probe).json()  # reflects it at once
            assert (after["version"], after["delta_seq"]) == ("2", seq)
            assert np.max(np.abs(np.asarray(after["predictions"]) - want[("2", seq)])) <= 1e-5
        # An out-of-order delta, or one for another version, is refused and changes nothing.
        r = control.post("/control/delta", json={"path": str(trained.deltas[3])})
        assert r.status_code == 409 and "not after" in r.json()["error"]
        r = control.post("/control/delta", json={"path": str(trained.deltas[0]), "seq": 99,
                                                 "version": "1"})
        assert r.status_code == 409 and "serves version '2'" in r.json()["error"]
        assert control.get("/v2/models/ctr").json()["parameters"]["delta_seq"] == seqs[-1]
    finally:
        stop.set()
        for w in workers:
            w.join()
        metrics = s.client.get("/metrics").text
        stop_server(s)
    assert failures == []
    seen = set()
    for _, a in answers:
        key = (a["version"], a["delta_seq"])
        seen.add(key)
        assert np.max(np.abs(np.asarray(a["predictions"]) - want[key])) <= 1e-5, key
    assert ("1", 0) in seen and ("2", seqs[-1]) in seen
    # A request sent after a swap returned is answered by that state or a later one.
    states = [("1", 0), ("2", 0), *(("2", seq) for seq in seqs)]
    for sent, a in answers:
        done = [state for t, state in applied if t < sent]
        if done:
            assert states.index((a["version"], a["delta_seq"])) >= states.index(done[-1])
    assert f"plinth_serve_delta_seq {float(seqs[-1])}" in metrics
