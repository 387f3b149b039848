"""`plinth data build --engine ray`: the same spec gives the Polars build's dataset.

One local Ray (127.0.0.1, no dashboard, 2 cores) serves the whole module; the engine uses
a Ray that is already initialised and leaves it running. The outputs are compared file
by file in order (the Ray engine restores each day's row order), Arrow schemas included.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _sockets import descendants, listening

from plinth.cli.local_server import plinth_command
from plinth.data import manifest as mf
from plinth.data.build import build
from plinth.data.reader import DataError
from plinth.data.spec import load_spec

from ._builds import at, ev, imp, logs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCHEMA = {
    "label": "click",
    "labels": [
        {"name": "click", "event": "click", "window": "30m"},
        {"name": "conversion", "event": "conversion", "window": "24h", "match": "user_item"},
    ],
    "weight": "w",
    "categorical": ["user_id", "item_id", "seg", {"name": "tags", "multi": True},
                    {"name": "price_b", "bucketize": "price", "boundaries": [1.5, 2.5]},
                    {"name": "price_q", "bucketize": "price", "quantiles": 3},
                    {"name": "user_x_seg", "cross": ["user_id", "seg"]}],
    "numeric": ["price"],
}


@pytest.fixture(scope="module")
def ray_local():
    """The engine's own local Ray (as a build without --ray-address starts it), kept for
    the module: builds find it initialised and leave it running."""
    pytest.importorskip("ray")
    from plinth.data.ray_build import ray_session

    with ray_session():
        yield


def test_the_local_ray_listens_on_loopback_only(ray_local):
    import ray

    assert ray.get(ray.remote(lambda: 1).remote()) == 1  # workers up too
    addrs = [a for a, _ in listening(descendants([os.getpid()]))]
    assert len(addrs) >= 2, "found no listening sockets: the check itself is broken"
    beyond = [a for a in addrs if not ipaddress.ip_address(a).is_loopback]
    assert beyond == [], f"the build's Ray listens beyond loopback: {beyond}"


def _spec(root):
    """Two days of edge cases: a click across midnight, late, early and duplicate events,
    a feature updated after the impression, a user and an item with no snapshot, nulls,
    empty and null lists, null weights."""
    impressions = [
        {**imp(1, 1, 1, at("10:00")), "tags": ["a", "b"], "w": 1.0},
        {**imp(2, 1, 2, at("10:00")), "tags": [], "w": None},
        {**imp(3, 2, 1, at("11:00")), "tags": None, "w": 2.0},
        {**imp(4, 4, 9, at("23:50")), "tags": ["c"], "w": 0.5},      # no user, no item snapshot
        {**imp(5, 2, 2, at("23:55")), "tags": ["a"], "w": None},
        {**imp(6, 3, 3, at("00:10", 1)), "tags": ["b", "b"], "w": 1.0},
        {**imp(7, 1, 1, at("09:00", 1)), "tags": [], "w": 3.0},
        {**imp(8, 3, 2, at("09:00", 1)), "tags": None, "w": None},   # same ts: order by request
    ]
    events = [
        ev("click", at("09:59"), req=1, item=1),               # before the impression: no
        ev("click", at("10:05"), req=2, item=2),               # inside: yes
        ev("click", at("10:05"), req=2, item=2),               # duplicate: once
        ev("click", at("11:31"), req=3, item=1),               # outside 30m: no
        ev("click", at("00:05", 1), req=5, item=2),            # after midnight, inside: yes
        ev("conversion", at("08:00", 1), user=1, item=1),      # credits req 1 (latest then)
        ev("conversion", at("10:00", 1), user=1, item=1),      # credits req 7 (last touch)
        ev("click", at("09:10", 1), req=8, item=2),
    ]
    users = [{"user_id": 1, "ts": at("00:00", -1), "seg": 10},
             {"user_id": 2, "ts": at("00:00", -1), "seg": None},           # null feature
             {"user_id": 2, "ts": at("11:30"), "seg": 21},                 # after req 3: not it
             {"user_id": 3, "ts": at("00:00"), "seg": 30}]
    items = [{"item_id": 1, "ts": at("00:00", -1), "price": 1.0},
             {"item_id": 2, "ts": at("00:00", -1), "price": None},
             {"item_id": 2, "ts": at("12:00"), "price": 2.0},
             {"item_id": 3, "ts": at("00:00"), "price": 3.0}]
    path = logs(root, impressions, events, users, items, schema=SCHEMA)
    return load_spec(path)


def _with_output(spec, out):
    return load_spec({**spec.to_dict(), "output": str(out)})


def _dataset(out):
    m = mf.read_manifest(out)
    assert m is not None
    files = {f: pq.read_table(out / f) for d in m["days"].values() for f in d["files"]}
    return m, files


def test_the_ray_engine_writes_the_polars_dataset(tmp_path, ray_local):
    spec = _spec(tmp_path)
    a = build(_with_output(spec, tmp_path / "polars"), progress=False)
    b = build(_with_output(spec, tmp_path / "ray"), progress=False, engine="ray")
    assert (a.days_built, a.rows_written, a.files_written, a.schema_hash) == (
        b.days_built, b.rows_written, b.files_written, b.schema_hash)
    assert a.rows_written == 8 and len(a.days_built) == 2
    ma, fa = _dataset(tmp_path / "polars")
    mb, fb = _dataset(tmp_path / "ray")
    assert fa.keys() == fb.keys()
    for name, table in fa.items():
        assert fb[name].schema == table.schema, name
        assert fb[name].equals(table), name  # same rows in the same order, same values
    drop = {"created_at"}
    assert {k: v for k, v in ma.items() if k not in drop} == {
        k: v for k, v in mb.items() if k not in drop}
    assert (tmp_path / "polars" / "schema.yaml").read_text() == (
        tmp_path / "ray" / "schema.yaml").read_text()
    # The edge cases really are in the data (so equality means something).
    both = pa.concat_tables(fa[f] for f in sorted(fa)).to_pylist()
    by_req = {r["request_id"]: r for r in both}
    assert [by_req[r]["click"] for r in range(1, 9)] == [0, 1, 0, 0, 1, 0, 0, 1]
    assert [by_req[r]["conversion"] for r in range(1, 9)] == [1, 0, 0, 0, 0, 0, 1, 0]
    assert by_req[3]["seg"] is None and by_req[4]["seg"] is None and by_req[4]["price"] is None
    assert by_req[3]["user_x_seg"] is None and by_req[1]["user_x_seg"] is not None
    assert by_req[2]["tags"] == [] and by_req[3]["tags"] is None
    assert by_req[2]["w"] == 1.0
    # A rerun on Ray over the same inputs writes nothing.
    again = build(_with_output(spec, tmp_path / "ray"), progress=False, engine="ray")
    assert again.days_built == [] and again.rows_total == 8


def test_a_data_error_in_a_ray_task_is_the_build_error_and_leaves_nothing(tmp_path, ray_local):
    spec = _spec(tmp_path)
    bad = tmp_path / "raw" / "impressions" / "part-0.parquet"
    t = pq.read_table(bad)
    pq.write_table(t.set_column(t.column_names.index("w"), "w",
                                pa.array([-1.0] * t.num_rows)), bad)
    out = tmp_path / "ray"
    with pytest.raises(DataError) as e:
        build(_with_output(spec, out), progress=False, engine="ray")
    assert type(e.value) is DataError  # Ray's wrapper (and its traceback text) taken off
    assert str(e.value).startswith("weight column 'w' has negative or non-finite values")
    assert not out.exists()


def test_an_interrupted_ray_build_leaves_no_manifest(tmp_path, ray_local):
    spec = _spec(tmp_path)

    def stop(day):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(_with_output(spec, tmp_path / "ray"), progress=False, engine="ray", after_day=stop)
    assert not (tmp_path / "ray").exists()


def _cli(*args):
    return subprocess.run([*plinth_command(), "data", "build", *args],
                          check=False, capture_output=True, text=True, timeout=120)


def test_cli_refuses_an_unknown_engine_and_an_address_nothing_listens_on(tmp_path):
    spec = _spec(tmp_path)
    spec_file = tmp_path / "spec.yaml"
    r = _cli(str(spec_file), "--engine", "spark")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "spark" in r.stderr and "polars" in r.stderr
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _cli(str(spec_file), "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", "-o", "json")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot connect to the Ray cluster at '127.0.0.1:{port}'" in r.stderr
    assert not spec.output.exists()
    r = _cli(str(spec_file), "--ray-address", f"127.0.0.1:{port}")
    assert r.returncode == 2 and "--ray-address needs --engine ray" in r.stderr
    r = subprocess.run([sys.executable, "-m", "plinth.data.build", str(spec_file), "--engine",
                        "ray", "--ray-address", f"127.0.0.1:{port}"],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot connect" in r.stderr


def test_cli_builds_on_a_running_cluster_at_ray_address(tmp_path):
    """`--ray-address` connects to a cluster (a 1-node one on loopback, its own processes)."""
    from ray.cluster_utils import Cluster

    spec = _spec(tmp_path)
    build(_with_output(spec, tmp_path / "polars"), progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "_system_config": {"agent_register_timeout_ms": 180_000}})
    try:
        r = _cli(str(tmp_path / "spec.yaml"), "--engine", "ray", "--ray-address",
                 cluster.address, "-o", "json")
    finally:
        cluster.shutdown()
    assert r.returncode == 0, r.stderr
    _, polars_files = _dataset(tmp_path / "polars")
    _, ray_files = _dataset(spec.output)
    assert polars_files.keys() == ray_files.keys()
    assert all(ray_files[f].equals(t) for f, t in polars_files.items())


def test_submit_passes_the_engine_to_the_job(tmp_path):
    from plinth.cli.data import build_job_spec

    spec = _spec(tmp_path)
    plain = build_job_spec(spec, name="b", cpu=1, memory="1Gi", max_runtime=None)
    assert "--engine" not in plain["roles"]["main"]["command"]
    job = build_job_spec(spec, name="b", cpu=1, memory="1Gi", max_runtime=None, engine="ray",
                         ray_address="10.0.0.1:6380")
    assert job["roles"]["main"]["command"][-4:] == ["--engine", "ray", "--ray-address",
                                                    "10.0.0.1:6380"]
