"""The worker's pure parts: environment, data split, prefetch ids; and one in-process run
(1 worker, 2 shards) that checkpoints, is resumed, and ends where an undisturbed run does."""

import json
from pathlib import Path

import numpy as np
import pytest

from plinth.data.reader import ParquetReader
from plinth.train.config import ConfigError, load_config
from plinth.train.data_split import WorkerReader, assign_row_groups, steps_per_epoch
from plinth.train.distributed import Cluster, DistributedTrainer, load_params_config
from plinth.train.trainer import Trainer, TrainingInterrupted

from ._cluster import shard_threads
from .conftest import small_config


def test_cluster_from_env_and_what_it_refuses() -> None:
    env = {"PLINTH_ROLES": json.dumps({"ps": ["127.0.0.1:1", "127.0.0.1:2"],
                                       "worker": ["127.0.0.1:3", "127.0.0.1:4"]}),
           "RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "3"}
    c = Cluster.from_env(env)
    assert c.ps == ("127.0.0.1:1", "127.0.0.1:2") and (c.rank, c.world_size) == (1, 2)
    with pytest.raises(ConfigError, match="no 'ps' role"):
        Cluster.from_env({"PLINTH_ROLES": json.dumps({"worker": ["a:1"]})})
    with pytest.raises(ConfigError, match="MASTER_PORT"):
        Cluster.from_env({"PLINTH_ROLES": json.dumps({"ps": ["a:1"]}), "WORLD_SIZE": "2"})


def test_params_config_is_required_and_checked(ps_data) -> None:
    with pytest.raises(ConfigError, match="no 'config'"):
        load_params_config({"PLINTH_PARAMS": json.dumps({"lr": 1})})
    with pytest.raises(ConfigError, match="distributed.staleness"):
        load_params_config({"PLINTH_PARAMS": json.dumps(
            {"config": small_config(ps_data, Path("out"), distributed={"staleness": -1})})})
    cfg = load_params_config({"PLINTH_PARAMS": json.dumps(
        {"config": small_config(ps_data, Path("out"), distributed={"staleness": 0})})})
    assert cfg.distributed is not None and cfg.distributed.staleness == 0


def test_row_groups_split_deterministically_and_evenly() -> None:
    rows = [500] * 7 + [120]
    a = assign_row_groups(rows, 3, seed=4)
    assert a == assign_row_groups(rows, 3, seed=4)
    assert sorted(g for share in a for g in share) == list(range(len(rows)))
    totals = [sum(rows[g] for g in share) for share in a]
    assert max(totals) - min(totals) <= max(rows)
    assert steps_per_epoch(rows, a, 256) == min(-(-t // 256) for t in totals)


def test_worker_readers_cover_the_data_once(ps_data) -> None:
    cfg = load_config(small_config(ps_data, Path("out")))
    readers = [WorkerReader(cfg.data_paths("train"), cfg.schema, 256, rank=r, world_size=2)
               for r in range(2)]
    full = ParquetReader(cfg.data_paths("train"), cfg.schema, 256)
    assert sum(r.num_rows for r in readers) == full.num_rows
    labels = [np.concatenate([b.labels for b in r.iter_epoch(0)]) for r in readers]
    assert sum(len(x) for x in labels) == full.num_rows


def test_unique_ids_are_exactly_what_forward_pulls(ps_data, tmp_path) -> None:
    cfg = load_config(small_config(ps_data, tmp_path))
    tr = Trainer(cfg, log=lambda m: None)
    batch = next(ParquetReader(cfg.data_paths("train"), cfg.schema, 256).iter_epoch(0))
    pulled: list[tuple[str, np.ndarray]] = []
    wanted = {}
    for m in tr.model.sparse_modules():
        wanted.update(m.unique_ids(batch.sparse))
        for name, t in m.tables.items():
            pull = t.pull
            t.pull = lambda ids, train=True, n=name, f=pull: (pulled.append((n, ids.copy())),
                                                               f(ids, train))[1]
    tr.model.train()
    tr.model(batch)
    assert pulled and all(np.array_equal(ids, wanted[n]) for n, ids in pulled)


@pytest.mark.slow
def test_resumed_worker_continues_from_the_checkpoint(ps_data, tmp_path) -> None:
    over = {"epochs": 2, "checkpoint": {"every_steps": 5}, "export": {"package": False},
            "distributed": {"staleness": 0, "prefetch": False}}
    cfg = load_config(small_config(ps_data, tmp_path / "a", **over))
    with shard_threads(2) as addrs:
        tr = DistributedTrainer(cfg, Cluster(tuple(addrs)), log=lambda m: None)
        full = tr.fit()
        tr.close()
    # Same run, stopped by a request (as by SIGTERM) with a checkpoint, then resumed.
    cfg_b = load_config(small_config(ps_data, tmp_path / "b", **over))
    with shard_threads(2) as addrs:
        tr = DistributedTrainer(cfg_b, Cluster(tuple(addrs)), log=lambda m: None)
        real_step = tr.train_step

        def step_then_stop(batch):
            loss = real_step(batch)
            if tr.step == 7:
                tr.request_stop()  # honoured after this step: checkpoint, then raise
            return loss

        tr.train_step = step_then_stop
        with pytest.raises(TrainingInterrupted, match="training stopped at step 7"):
            tr.fit()
        tr.client.shutdown()
        tr.close()
    with shard_threads(3) as addrs:  # and onto another number of shards
        tr = DistributedTrainer(cfg_b, Cluster(tuple(addrs)), log=lambda m: None)
        resumed = tr.fit()
        tr.close()
    assert resumed["resumed_from_step"] == 7
    assert resumed["steps"] == full["steps"]
    assert abs(resumed["auc"] - full["auc"]) < 1e-6


@pytest.mark.slow
def test_deltas_chain_up_to_the_final_package(ps_data, tmp_path) -> None:
    cfg = load_config(small_config(ps_data, tmp_path, export={"delta_every_steps": 4},
                                   checkpoint={"every_steps": 6}))
    with shard_threads(2) as addrs:
        tr = DistributedTrainer(cfg, Cluster(tuple(addrs)), log=lambda m: None)
        remote = dict(tr.tables)
        tr.fit()
        tr.close()
    # Every training pull was prefetched during the previous step.
    assert [(t.prefetch_hits, t.prefetch_misses) for t in remote.values()] == [(tr.step, 0)]
    deltas = sorted((tmp_path / "deltas").glob("delta-*"))
    steps = [json.loads((d / "delta.json").read_text())["step"] for d in deltas]
    assert steps == sorted(set(steps)) and 4 in steps and 6 in steps and steps[-1] == tr.step
    rows: dict[int, np.ndarray] = {}
    for d in deltas:  # replaying every delta in order rebuilds the final rows exactly
        z = np.load(d / "tables" / "emb.npz")
        for i in z["evicted_ids"]:
            rows.pop(int(i), None)
        rows.update({int(i): v for i, v in zip(z["ids"], z["values"], strict=True)})
    pkg = np.load(tmp_path / "model" / "tables" / "emb.npz")
    assert set(rows) == set(pkg["ids"].tolist())
    assert all(np.array_equal(rows[int(i)], v) for i, v in zip(pkg["ids"], pkg["values"],
                                                               strict=True))


def test_few_row_groups_are_cut_so_every_worker_trains(tmp_path) -> None:
    """One row group and three workers: each gets rows (none trains zero steps) and
    together they read every row exactly once."""
    from plinth.data.reader import DataError
    from plinth.data.synthetic import SyntheticSpec, generate
    from plinth.train.data_split import split_pieces

    generate(SyntheticSpec(rows=3000, cardinalities=(10, 50), multi_fields=0, numeric=2,
                           seed=3, row_group_size=1_000_000), tmp_path)
    cfg = load_config(small_config(tmp_path, tmp_path / "out"))
    full = ParquetReader(cfg.data_paths("train"), cfg.schema, 256)
    readers = [WorkerReader(cfg.data_paths("train"), cfg.schema, 256, rank=r, world_size=3)
               for r in range(3)]
    assert readers[0].steps_per_epoch > 0 and all(r.num_rows > 0 for r in readers)
    got = np.sort(np.concatenate([b.dense[:, 0] for r in readers for b in r.iter_epoch(0)]))
    want = np.sort(np.concatenate([b.dense[:, 0] for b in full.iter_epoch(0)]))
    assert np.array_equal(got, want)
    assert split_pieces([5, 2], 6) == [(0, 0, 2), (0, 2, 1), (0, 3, 2), (1, 0, 1), (1, 1, 1)]
    with pytest.raises(DataError, match="too few to give each of 5000 workers"):
        WorkerReader(cfg.data_paths("train"), cfg.schema, 256, rank=0, world_size=5000)


def test_the_gangs_rendezvous_listens_on_master_addr_only() -> None:
    """torch's tcp:// rendezvous would listen on every interface of worker 0's node."""
    import os
    import socket
    from datetime import timedelta

    from _sockets import listening

    from plinth.train.distributed import rendezvous_store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = rendezvous_store("127.0.0.1", port, 1, 0, timedelta(seconds=30))
    store.set("k", "v")
    assert store.get("k") == b"v"
    ours = [(a, p) for a, p in listening({os.getpid()}) if p == port]
    assert ours == [("127.0.0.1", port)]
