"""What only the Ray executor does: placement groups pinned to the scheduler's nodes,
node loss, agents by name, traffic on loopback. On the session's real Ray cluster."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from _executor_helpers import DEADLINE_S, py, wait_for
from _sockets import listening

from plinth.executors.base import EXIT_LOST, ReplicaLaunch
from plinth.executors.supervisor import proc_start_time

SLEEP_READY = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def _spec(tmp_path: Path, wid: str, replica: int, node: str, **kw: object) -> ReplicaLaunch:
    (tmp_path / "work").mkdir(exist_ok=True)
    fields: dict[str, object] = {
        "workload_id": wid, "role": "worker", "replica": replica, "attempt": 1,
        "command": py(SLEEP_READY), "env": {}, "workdir": tmp_path / "work",
        "log_path": tmp_path / "logs" / f"{wid}-{replica}.log", "node": node,
        "resources": {"cpu": 1.0, "memory": 256, "gpu": 0},
    }  # fmt: skip
    fields.update(kw)
    return ReplicaLaunch(**fields)  # type: ignore[arg-type]


def _pg(name: str) -> dict | None:
    import ray

    live = [
        info for info in ray.util.placement_group_table().values()
        if info["name"] == name and info["state"] != "REMOVED"
    ]  # fmt: skip
    return live[0] if live else None


def test_inventory_is_the_clusters_nodes(ray_cluster) -> None:
    ex = ray_cluster.executor()
    nodes = {n.name: n for n in ex.inventory()}
    assert set(nodes) >= {"head", "w1"}
    assert (nodes["head"].cpu, nodes["head"].gpu, nodes["head"].memory_mib) == (2.0, 0, 2048)
    assert (nodes["w1"].cpu, nodes["w1"].gpu, nodes["w1"].memory_mib) == (2.0, 1, 2048)
    assert {nodes["head"].address, nodes["w1"].address} == {"127.0.0.1"}


def test_one_placement_group_per_workload_pinned_to_the_chosen_nodes(
    ray_cluster, tmp_path: Path
) -> None:
    import ray

    ex = ray_cluster.executor()
    by_name = {n["Labels"].get("plinth-node"): n["NodeID"] for n in ray.nodes() if n["Alive"]}
    specs = [_spec(tmp_path, "pg1", 0, "w1"), _spec(tmp_path, "pg1", 1, "head")]
    ex.reserve("pg1", 1, specs)
    pg = _pg("plinth-pg1-1")
    assert pg is not None and pg["state"] == "CREATED"
    assert pg["bundles"] == {i: {"CPU": 1.0, "memory": float(256 << 20)} for i in (0, 1)}
    assert pg["bundles_to_node_id"] == {0: by_name["w1"], 1: by_name["head"]}
    handles = [ex.launch(s) for s in specs]
    for h in handles:
        wait_for(lambda h=h: b"ready" in ex.read_log(h, 0, 100), what="the replica to start")
    # Both replicas of the gang on their node, each under that node's agent.
    assert {h["node_id"] for h in handles} == {by_name["w1"], by_name["head"]}
    for h in handles:
        ex.stop(h, 0)
    for h in handles:
        assert ex.wait(h, DEADLINE_S) is not None
    assert _pg("plinth-pg1-1") is None  # released once every replica has ended


def test_a_gang_that_does_not_fit_its_node_is_refused_with_the_reason(
    ray_cluster, tmp_path: Path
) -> None:
    ex = ray_cluster.executor(placement_timeout=2)
    too_big = _spec(tmp_path, "pg2", 0, "head", resources={"cpu": 64.0, "memory": 0, "gpu": 0})
    with pytest.raises(RuntimeError, match="Ray could not reserve placement group plinth-pg2-1"):
        ex.reserve("pg2", 1, [too_big])
    assert _pg("plinth-pg2-1") is None


def test_a_node_that_leaves_fails_its_replicas_with_a_reason(ray_cluster, tmp_path: Path) -> None:
    ray_cluster.add_node("gone", num_cpus=1)
    ex = ray_cluster.executor()
    wait_for(lambda: any(n.name == "gone" for n in ex.inventory()), what="node gone to join")
    handle = ex.launch(_spec(tmp_path, "lost1", 0, "gone"))
    wait_for(lambda: b"ready" in ex.read_log(handle, 0, 100), what="the replica to start")
    pid = ex.replica_pid(handle)
    assert pid and proc_start_time(pid) is not None
    ray_cluster.remove_node("gone")
    assert ex.wait(handle, DEADLINE_S) == EXIT_LOST
    reason = ex.exit_reason(handle)
    assert reason is not None and reason.startswith("node-lost: node gone left the Ray cluster")
    # The node's replicas die with it (the agent's watchdog): no unseen second copy.
    wait_for(lambda: proc_start_time(pid) is None, what="the lost node's replica to end")
    ex.stop(handle, 1)  # harmless
    wait_for(lambda: all(n.name != "gone" for n in ex.inventory()), what="inventory to drop it")


def test_the_agent_is_a_detached_named_actor_per_node(ray_cluster, tmp_path: Path) -> None:
    import ray

    ex = ray_cluster.executor()
    handle = ex.launch(_spec(tmp_path, "agent1", 0, "w1", command=py("print('x')")))
    assert ex.wait(handle, DEADLINE_S) == 0
    actor = ray.get_actor(handle["agent"], namespace="plinth")
    info = ray.get(actor.ping.remote())
    assert info["node"] == "w1"
    assert handle["agent"] == f"plinth-agent-{handle['node_id']}"


def test_the_cluster_listens_on_loopback_only(ray_cluster) -> None:
    ray_cluster.executor()  # agents and workers up too
    listeners = listening(ray_cluster.pids())
    assert len(listeners) >= 2, "found no listening sockets at all: the check itself is broken"
    beyond = [
        (a, p) for a, p in listeners
        if not ipaddress.ip_address(a).is_loopback
    ]  # fmt: skip
    assert beyond == [], f"Ray listens beyond loopback: {beyond}"
