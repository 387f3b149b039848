"""The Ray executor: replicas on the nodes of an existing Ray cluster.

Configuration (server YAML)::

    executor: {kind: ray, address: "127.0.0.1:6379", namespace: plinth}

* **Inventory**: the cluster's alive nodes (``ray.nodes()``): ``CPU`` cores,
  ``memory`` (bytes, reported in MiB), ``GPU``; the node's name is its ``plinth-node``
  label when it has one (``ray start --labels plinth-node=gpu-1``), else
  ``ray-<first 12 hex digits of its node id>``; its address is the node's IP.
* **Gang**: :meth:`reserve` creates ONE placement group per workload attempt
  (``plinth-<workload>-<attempt>``) with a bundle per replica, each pinned to the node
  the scheduler chose (a ``ray.io/node-id`` label selector): the scheduler's placement
  is the truth and Ray does not re-place. It reserves the replicas' resources in Ray's
  own accounting, so other Ray users of the cluster cannot take them. It is removed
  when every replica of the attempt has ended.
* **Replicas** run on their node under the node's agent
  (:mod:`plinth.executors.ray_agent`: a detached named actor wrapping the local
  executor's supervised subprocesses), so a restarted server re-attaches by name.
* **Logs** are streamed back: every :meth:`poll` appends the replica's new output to
  ``log_path`` on the server's machine (where the API reads it), and the poll that
  returns the exit code first copies the rest.
* **Node loss**: a replica whose node has left the cluster is reported with
  :data:`~plinth.executors.base.EXIT_LOST` and :meth:`exit_reason` ``"node-lost: ..."``;
  the job's retries take over.

Handle (JSON-able)::

    {"executor": "ray", "node": name, "node_id": hex, "agent": actor name,
     "local": the agent's local handle, "log_path": server-side log,
     "workload_id": ..., "role": ..., "replica": int, "attempt": int}

The working directory is the one the server prepared: the nodes must see the
server's ``PLINTH_HOME`` at the same path (one machine, or a shared file system); see
docs/scale-out.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from plinth.executors.base import EXIT_LOST, Executor, NodeCapacity, ReplicaLaunch
from plinth.executors.ray_agent import NodeAgent, agent_name, default_root
from plinth.ray_link import is_loopback, loopback_init, unreachable

__all__ = ["RayExecutor", "RayExecutorError"]

log = logging.getLogger("plinth.executors.ray")

#: The node label that names a node in Plinth (else ``ray-<node id prefix>``).
NODE_LABEL = "plinth-node"
#: How much of a replica's log one poll copies back (bytes).
_PUMP_CHUNK = 1 << 20
#: Seconds an actor call may take before it is taken as failed.
_CALL_TIMEOUT_S = 30.0
#: Seconds the inventory is cached (``inventory`` may be called every cycle).
_INVENTORY_TTL_S = 1.0


class RayExecutorError(RuntimeError):
    """The Ray cluster cannot be reached or refused a request; the message says why."""


def _ray():
    import ray

    return ray


class RayExecutor(Executor):
    """Replicas on a Ray cluster (see the module docstring).

    ``node_ip_address``: this (the server's) machine's IP as the Ray cluster sees it
    (``127.0.0.1`` for a cluster kept on loopback). ``address``: the cluster's GCS address (``host:port``, or ``auto`` for the cluster
    started on this machine by ``ray start``). ``namespace``: the Ray namespace of the
    agents and placement groups (one per Plinth installation). ``agent_root``: where
    agents keep logs and status directories on their node, a folder per node
    under it (default ``$TMPDIR/plinth-ray``). ``placement_timeout``: seconds to wait for Ray
    to reserve a workload's placement group. ``nice``: niceness of replicas (as the
    local executor's). ``nodes`` must be left out: the cluster says what it has.
    """

    name = "ray"

    def __init__(
        self,
        address: str = "auto",
        namespace: str = "plinth",
        nodes: Iterable[Any] | None = None,
        agent_root: str | None = None,
        placement_timeout: float = 60.0,
        nice: int = 0,
        node_ip_address: str | None = None,
    ) -> None:
        if nodes:
            raise ValueError(
                "the ray executor takes its nodes from the Ray cluster: remove `nodes:` "
                "from the configuration (declare resources with `ray start --num-cpus "
                "--num-gpus --memory` instead)"
            )
        if not 0 <= int(nice) <= 19:
            raise ValueError(f"nice must be an increment from 0 to 19, got {nice!r}")
        self._address = address
        self._namespace = namespace
        self._agent_root = agent_root
        self._placement_timeout = float(placement_timeout)
        self._nice = int(nice)
        self._node_ip = node_ip_address
        self._lock = threading.RLock()
        self._agents: dict[str, Any] = {}
        self._inventory: tuple[float, list[NodeCapacity], dict[str, dict]] | None = None
        self._connect()

    # -- connection and nodes ------------------------------------------------------------

    def _connect(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        why = unreachable(self._address)
        if why is not None:
            raise RayExecutorError(
                f"cannot connect to the Ray cluster at {self._address!r}: {why}. "
                "Start it with `ray start --head --port PORT --node-ip-address IP` and give "
                "IP:PORT as executor.address"
            )
        loopback = self._node_ip is not None and is_loopback(self._node_ip)
        try:
            with loopback_init(loopback):
                ray.init(
                    address=self._address, namespace=self._namespace,
                    ignore_reinit_error=True, log_to_driver=False,
                    logging_level=logging.WARNING,
                    **({"_node_ip_address": self._node_ip} if self._node_ip else {}),
                )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - Ray raises several types for this
            raise RayExecutorError(
                f"cannot connect to the Ray cluster at {self._address!r}: {e}. Start it "
                "with `ray start --head --node-ip-address=...` and give its address "
                "(host:6379) as executor.address"
            ) from None

    def _nodes(self, fresh: bool = False) -> tuple[list[NodeCapacity], dict[str, dict]]:
        """(inventory, node name -> raw Ray node) of the alive nodes."""
        with self._lock:
            now = time.monotonic()
            if not fresh and self._inventory and now - self._inventory[0] < _INVENTORY_TTL_S:
                return self._inventory[1], self._inventory[2]
            caps: list[NodeCapacity] = []
            raw: dict[str, dict] = {}
            for n in _ray().nodes():
                if not n.get("Alive"):
                    continue
                res = n.get("Resources") or {}
                name = (n.get("Labels") or {}).get(NODE_LABEL) or f"ray-{n['NodeID'][:12]}"
                caps.append(NodeCapacity(
                    name=name, cpu=float(res.get("CPU", 0.0)),
                    memory_mib=int(res.get("memory", 0) // (1 << 20)),
                    gpu=int(res.get("GPU", 0)), address=n.get("NodeManagerAddress") or "127.0.0.1",
                ))  # fmt: skip
                raw[name] = n
            caps.sort(key=lambda c: c.name)
            self._inventory = (now, caps, raw)
            return caps, raw

    def inventory(self) -> list[NodeCapacity]:
        return list(self._nodes()[0])

    def _node(self, name: str) -> tuple[NodeCapacity, dict]:
        caps, raw = self._nodes()
        if name not in raw:
            caps, raw = self._nodes(fresh=True)
        for c in caps:
            if c.name == name:
                return c, raw[name]
        raise ValueError(
            f"unknown node {name!r}: the Ray cluster's alive nodes are "
            f"{', '.join(c.name for c in caps) or 'none'}"
        )

    def _node_alive(self, node_id: str) -> bool:
        return any(n["NodeID"] == node_id and n.get("Alive") for n in _ray().nodes())

    # -- agents ----------------------------------------------------------------------------

    def _agent(self, node_name: str) -> tuple[Any, str]:
        """(actor handle, node id) of the agent of node `node_name`, started if missing."""
        cap, raw = self._node(node_name)
        node_id = raw["NodeID"]
        with self._lock:
            actor = self._agents.get(node_id)
        if actor is None:
            actor = self._agent_by_id(node_id, cap)
        return actor, node_id

    def _agent_by_id(self, node_id: str, cap: NodeCapacity | None = None) -> Any:
        ray = _ray()
        name = agent_name(node_id)
        try:
            actor = ray.get_actor(name, namespace=self._namespace)
        except ValueError:
            if cap is None:
                raise
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # One folder per node even on a shared file system: an agent's watchdog kills
            # every replica under its root when the agent's node goes.
            root = (
                os.path.join(self._agent_root, node_id[:16]) if self._agent_root
                else default_root(node_id)
            )  # fmt: skip
            actor = (
                ray.remote(NodeAgent)
                .options(
                    name=name, namespace=self._namespace, lifetime="detached",
                    get_if_exists=True, num_cpus=0, max_concurrency=16, max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                )
                .remote(asdict(cap), root, self._nice)
            )  # fmt: skip
        with self._lock:
            self._agents[node_id] = actor
        return actor

    def _call(self, handle: Mapping[str, Any], method: str, *args: Any) -> Any:
        """Call the agent of the handle's node. Raises ``_NodeLost`` when the node has
        left the cluster; restarts a dead agent of a live node once."""
        ray = _ray()
        node_id = handle["node_id"]
        for attempt in (1, 2):
            with self._lock:
                actor = self._agents.get(node_id)
            try:
                if actor is None:
                    actor = self._agent_by_id(node_id)
                return ray.get(getattr(actor, method).remote(*args), timeout=_CALL_TIMEOUT_S)
            except (ray.exceptions.RayActorError, ValueError):
                with self._lock:
                    self._agents.pop(node_id, None)
                if not self._node_alive(node_id):
                    raise _NodeLost(handle.get("node") or node_id) from None
                if attempt == 2:
                    raise
                # A live node whose agent died: a fresh agent reads the same status dirs.
                cap, _ = self._node(handle["node"])
                self._agent_by_id(node_id, cap)
        raise AssertionError("unreachable")

    # -- gang ----------------------------------------------------------------------------

    def reserve(self, workload_id: str, attempt: int, specs: Sequence[ReplicaLaunch]) -> None:
        """One placement group for the attempt, a bundle per replica pinned to its node.
        Blocks until Ray reserved it (``placement_timeout``); raises
        ``RayExecutorError`` when it cannot."""
        ray = _ray()
        from ray.util.placement_group import placement_group, remove_placement_group

        name = _pg_name(workload_id, attempt)
        self._remove_gang(workload_id)  # an earlier attempt's, if still there
        bundles, selectors = [], []
        for spec in specs:
            _, raw = self._node(spec.node)
            res = spec.resources or {}
            bundle = {"CPU": float(res.get("cpu", 0.0))}
            if res.get("memory"):
                bundle["memory"] = float(int(res["memory"]) << 20)
            if res.get("gpu"):
                bundle["GPU"] = float(res["gpu"])
            bundle = {k: v for k, v in bundle.items() if v > 0} or {"CPU": 0.001}
            bundles.append(bundle)
            selectors.append({"ray.io/node-id": raw["NodeID"]})
        if not bundles:
            return
        pg = placement_group(
            bundles, strategy="PACK", name=name, lifetime="detached",
            bundle_label_selector=selectors,
        )  # fmt: skip
        try:
            ready = ray.get(pg.ready(), timeout=self._placement_timeout)
        except Exception as e:  # noqa: BLE001 - GetTimeoutError and friends
            ready, why = None, str(e) or type(e).__name__
        else:
            why = ""
        if not ready:
            remove_placement_group(pg)
            raise RayExecutorError(
                f"Ray could not reserve placement group {name} ({bundles} on "
                f"{[s.node for s in specs]}) within {self._placement_timeout:g}s: the nodes "
                f"are busy with work Plinth does not know of, or gone {why}".rstrip()
            )

    def _remove_gang(self, workload_id: str) -> None:
        ray = _ray()
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        prefix = f"plinth-{workload_id}-"
        for pg_id, info in ray.util.placement_group_table().items():
            if info.get("name", "").startswith(prefix) and info.get("state") != "REMOVED":
                try:
                    remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_id)))
                except Exception:
                    log.debug("removing placement group %s failed", pg_id, exc_info=True)

    def _ended(self, handle: Mapping[str, Any]) -> None:
        """Release the attempt's placement group once none of its replicas runs on any
        of its nodes. Asks the agents (not this instance's memory), so it holds after a
        server restart too; when unsure (an agent does not answer) it keeps the group."""
        ray = _ray()
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        name = _pg_name(handle["workload_id"], handle["attempt"])
        found = [
            (pg_id, info) for pg_id, info in ray.util.placement_group_table().items()
            if info.get("name") == name and info.get("state") != "REMOVED"
        ]  # fmt: skip
        if not found:
            return
        pg_id, info = found[0]
        _, raw = self._nodes(fresh=True)
        names = {n["NodeID"]: name_ for name_, n in raw.items()}
        for node_id in set((info.get("bundles_to_node_id") or {}).values()):
            if node_id not in names:
                continue  # gone: its replicas went with it
            where = {"node": names[node_id], "node_id": node_id}
            try:
                live = self._call(where, "live_replicas", handle["workload_id"], handle["attempt"])
            except _NodeLost:
                continue
            except Exception:
                log.warning("could not count the live replicas of %s", name, exc_info=True)
                return
            if live:
                return
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_id)))
        except Exception:
            log.debug("removing placement group %s failed", name, exc_info=True)

    # -- launch, poll, stop --------------------------------------------------------------

    def launch(self, spec: ReplicaLaunch) -> dict:
        if not spec.command:
            raise ValueError("the command is empty: give at least the program to run")
        cap, _ = self._node(spec.node)
        if len(set(spec.gpus)) != len(spec.gpus) or any(not 0 <= g < cap.gpu for g in spec.gpus):
            raise ValueError(
                f"GPUs {list(spec.gpus)} do not fit node {cap.name!r}, which has "
                f"{cap.gpu} GPU(s) numbered 0..{cap.gpu - 1}: give distinct indices in range"
            )
        actor, node_id = self._agent(spec.node)
        fields = asdict(spec)
        fields["workdir"] = os.fspath(os.path.abspath(spec.workdir))
        fields["log_path"] = os.fspath(spec.log_path)
        fields["gpus"] = list(spec.gpus)
        ray = _ray()
        try:
            local = ray.get(actor.launch.remote(fields), timeout=_CALL_TIMEOUT_S)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, Exception) else None
            if isinstance(cause, ValueError | OSError):
                raise type(cause)(str(cause)) from None
            raise
        except ray.exceptions.RayActorError:
            with self._lock:
                self._agents.pop(node_id, None)
            raise OSError(f"the agent of node {spec.node!r} is gone; the node may be leaving")
        log_path = os.path.abspath(spec.log_path)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "executor": self.name, "node": spec.node, "node_id": node_id,
            "agent": agent_name(node_id), "local": local, "log_path": log_path,
            "workload_id": spec.workload_id, "role": spec.role, "replica": spec.replica,
            "attempt": spec.attempt,
        }  # fmt: skip

    def poll(self, handle: dict) -> int | None:
        path = Path(handle["log_path"])
        try:
            while True:
                offset = path.stat().st_size if path.exists() else 0
                code, data = self._call(
                    handle, "poll_and_read", handle["local"], offset, _PUMP_CHUNK
                )
                if data:
                    with open(path, "ab") as f:
                        f.write(data)
                # Running: what there is now is enough. Ended: copy the rest first.
                if code is None or len(data) < _PUMP_CHUNK:
                    break
        except _NodeLost:
            code = EXIT_LOST
        if code is not None:
            self._ended(handle)
        return code

    def exit_reason(self, handle: dict) -> str | None:
        try:
            return self._call(handle, "exit_reason", handle["local"])
        except _NodeLost as e:
            return f"node-lost: {e.node_words()}"

    def stop(self, handle: dict, grace_s: float) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0 seconds, got {grace_s}")
        try:
            self._call(handle, "stop", handle["local"], float(grace_s))
        except _NodeLost:
            return  # the node took its replicas with it (the agent's watchdog)

    def read_log(self, handle_or_path: dict | str | Path, offset: int, limit: int) -> bytes:
        if limit < 0:
            raise ValueError(f"limit must be >= 0 bytes, got {limit}")
        if isinstance(handle_or_path, Mapping):
            self.poll(dict(handle_or_path))  # bring the copy up to date first
            path = Path(handle_or_path["log_path"])
        else:
            path = Path(handle_or_path)
        try:
            with open(path, "rb") as f:
                if offset < 0:
                    f.seek(max(os.fstat(f.fileno()).st_size + offset, 0))
                else:
                    f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    def allocate_port(self, node: str) -> int:
        actor, _ = self._agent(node)
        return int(_ray().get(actor.allocate_port.remote(), timeout=_CALL_TIMEOUT_S))

    def find_launched(
        self, workload_id: str, role: str, replica: int, attempt: int, log_path: str | Path
    ) -> list[dict]:
        out = []
        caps, raw = self._nodes(fresh=True)
        for cap in caps:
            node_id = raw[cap.name]["NodeID"]
            base = {"node": cap.name, "node_id": node_id}
            try:
                found = self._call(base, "find_launched", workload_id, role, replica, attempt)
            except Exception:  # a node that cannot answer has nothing to stop
                log.warning("node %s did not answer find_launched", cap.name, exc_info=True)
                continue
            for local in found:
                out.append({
                    "executor": self.name, **base, "agent": agent_name(node_id),
                    "local": local, "log_path": os.path.abspath(log_path),
                    "workload_id": workload_id, "role": role, "replica": replica,
                    "attempt": attempt,
                })  # fmt: skip
        return out

    def replica_pid(self, handle: dict) -> int | None:
        """The command's pid on its node (for tests and diagnostics)."""
        return self._call(handle, "replica_pid", handle["local"])


class _NodeLost(Exception):
    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node

    def node_words(self) -> str:
        return f"node {self.node} left the Ray cluster; its replicas are gone with it"


def _pg_name(workload_id: str, attempt: int) -> str:
    return f"plinth-{workload_id}-{attempt}"
