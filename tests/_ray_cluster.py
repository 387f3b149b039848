"""A real multi-node Ray cluster on loopback for the tests, one per test session.

The ``ray_cluster`` fixture is registered in tests/conftest.py, so every folder's
tests (executors, integration, api) share the one cluster: a test module that adds
nodes removes them again before it ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _sockets import descendants

#: The nodes the Ray tests start: name (the `plinth-node` label) -> declared resources.
RAY_NODES = {
    "head": {"num_cpus": 2, "memory": 2 << 30},
    "w1": {"num_cpus": 2, "num_gpus": 1, "memory": 2 << 30},
}


class RayTestCluster:
    """A ``ray.cluster_utils.Cluster`` of :data:`RAY_NODES`, every node on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        from ray.cluster_utils import Cluster

        self.root = root
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args=self._node_args("head", include_dashboard=False),
        )
        self.nodes = {"head": self.cluster.head_node}
        for name in RAY_NODES:
            if name != "head":
                self.nodes[name] = self.cluster.add_node(**self._node_args(name))
        self.address = self.cluster.address

    @staticmethod
    def _node_args(name: str, **more: object) -> dict:
        return {
            **RAY_NODES.get(name, {"num_cpus": 1, "memory": 1 << 30}),
            "node_ip_address": "127.0.0.1",
            "labels": {"plinth-node": name},
            **more,
        }

    def add_node(self, name: str, **resources: object):
        node = self.cluster.add_node(**{**self._node_args(name), **resources})
        self.nodes[name] = node
        return node

    def remove_node(self, name: str) -> None:
        self.cluster.remove_node(self.nodes.pop(name))

    def pids(self) -> set[int]:
        """Every process of the cluster's nodes (GCS, raylets, agents, workers) and
        their descendants, from /proc."""
        return descendants([
            info.process.pid
            for node in self.nodes.values()
            for infos in node.all_processes.values()
            for info in infos
        ])

    def executor(self, **kw: object):
        from plinth.executors.ray_executor import RayExecutor

        return RayExecutor(
            address=self.address, node_ip_address="127.0.0.1",
            agent_root=str(self.root / "agents"), **kw,
        )  # fmt: skip

    def server_executor(self, agent_root: Path) -> dict:
        """The server configuration's ``executor:`` for this cluster."""
        return {
            "kind": "ray", "address": self.address, "node_ip_address": "127.0.0.1",
            "agent_root": str(agent_root),
        }  # fmt: skip

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """One real 2-node Ray cluster for the whole session (started on first use: ~30 s on
    two busy cores), its traffic on loopback."""
    pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        # The raylet gives each node's agents 30 s to come up by default: too little
        # when two cores are shared with other work.
        mp.setenv("RAY_agent_register_timeout_ms", "180000")
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # With the dashboard's packages installed (ray[default], for the Jobs API baseline
        # of benchmarks/ray_submit.py), every node would run the full agent: more to
        # import against the raylet's fixed 15 s start-up window, and a metrics reporter
        # polling all processes. These nodes need neither: they run the minimal agent,
        # as with plain `ray`.
        import ray._private.utils

        mp.setattr(
            ray._private.utils, "get_dashboard_dependency_error",
            lambda: ImportError("the test cluster runs Ray's minimal agents"),
        )  # fmt: skip
        cluster = RayTestCluster(tmp_path_factory.mktemp("ray"))
        try:
            yield cluster
        finally:
            cluster.shutdown()
