"""Node capacity for one cycle, indexed for fast best-fit gang placement.

Free capacity is kept per node as ``raw free - holds`` (holds: reservations
and the backfill shadow; see :class:`Hold`). Nodes are indexed in sorted lists
of ``(free cpu, free memory, node)``: one list for CPU-only nodes and, for GPU
nodes, one list per number of free GPUs. A replica needing ``g`` GPUs looks in
the lists ``g, g+1, ...`` (fewest spare GPUs first) and bisects for the node
with the least sufficient free CPU: best fit in O(log n) instead of a scan of
all nodes, which keeps whole nodes whole for large gangs.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plinth.scheduler.config import PlacementPolicy
from plinth.scheduler.model import Node, Workload
from plinth.scheduler.resources import CPU_EPS

Vec = tuple[float, float, float]
_NEG = float("-inf")
# Remember at most this many replica shapes that found no node; more gives
# little and costs a longer check per workload.
_MAX_FAILED_SHAPES = 32


@dataclass(slots=True)
class Hold:
    """Capacity kept free on one node from now until ``end``.

    ``start``: when its owner needs it; work that ends by then may use it.
    Owners: ``workload`` (the backfill shadow), or ``reservation`` with its
    ``group``/``user``. ``amount`` shrinks as an owner's workloads take it.
    """

    node: int
    amount: Vec
    start: float
    end: float
    reservation: str | None = None
    group: str | None = None
    user: str | None = None
    workload: str | None = None

    def owned_by(self, w: Workload, now: float) -> bool:
        """True when ``w`` may use this reservation's capacity now (window open)."""
        if self.reservation is None or not (self.start <= now < self.end):
            return False
        if w.reservation is not None:
            return w.reservation == self.reservation
        if self.user is not None:
            return w.user == self.user
        return self.group is not None and w.group == self.group


class NodePool:
    """Free capacity of every node, mutated as a cycle places work."""

    def __init__(
        self,
        nodes: Sequence[Node],
        running: Iterable[Workload],
        *,
        policy: PlacementPolicy = PlacementPolicy.BEST_FIT,
        cpu_work_on_gpu_nodes: bool = False,
    ) -> None:
        self.policy = policy
        self.cpu_on_gpu = cpu_work_on_gpu_nodes
        self.names = [n.name for n in nodes]
        self.index = {n.name: i for i, n in enumerate(nodes)}
        self.cap: list[Vec] = [n.capacity.as_tuple() for n in nodes]
        self.free: list[list[float]] = [list(c) for c in self.cap]
        self.gpu_node = [c[2] > 0 for c in self.cap]
        # CPU and memory per GPU of each GPU node: CPU-only work may use a GPU
        # node only beyond what its free GPUs need at this ratio, so that it
        # never strands a GPU.
        self.per_gpu: list[tuple[float, float]] = [
            (c[0] / c[2], c[1] / c[2]) if c[2] > 0 else (0.0, 0.0) for c in self.cap
        ]
        # With no CPU-only node at all (one workstation that declares GPUs),
        # CPU work has nowhere else to go: it may use GPU nodes freely.
        self.gpu_only = all(self.gpu_node) if self.gpu_node else False
        self.min_cpu_per_gpu = min((r[0] for r, g in zip(self.per_gpu, self.gpu_node,
                                                         strict=True) if g), default=0.0)
        self.max_gpu = int(max((c[2] for c in self.cap), default=0))
        self.shapes = sorted(set(self.cap))
        self._usage: dict[str, dict[int, Vec]] = {}
        for w in running:
            self.occupy(w, index=False)
        self.cpu_list: list[tuple[float, float, int]] = []
        self.gpu_lists: dict[int, list[tuple[float, float, int]]] = {}
        for i in range(len(self.names)):
            self._insert(i)
        # Sum of the positive free capacity, kept up to date by _change.
        self._tot_free = [sum(max(f[k], 0.0) for f in self.free) for k in range(3)]
        self.failed: list[Vec] = []
        self.holds: list[Hold] = []
        self.version = 0  # bumped on every change; lets callers cache derived text

    # -- index maintenance -------------------------------------------------

    def _key(self, i: int) -> tuple[float, float, int]:
        f = self.free[i]
        return (f[0], f[1], i)

    def _list_of(self, i: int) -> list[tuple[float, float, int]]:
        if not self.gpu_node[i]:
            return self.cpu_list
        k = int(self.free[i][2])
        lst = self.gpu_lists.get(k)
        if lst is None:
            lst = self.gpu_lists[k] = []
        return lst

    def _insert(self, i: int) -> None:
        insort(self._list_of(i), self._key(i))

    def _remove(self, i: int) -> None:
        lst = self._list_of(i)
        key = self._key(i)
        j = bisect_left(lst, key)
        del lst[j]

    def _change(self, i: int, c: float, m: float, g: float, *, restore: bool = False) -> None:
        """Add ``(c, m, g)`` to node ``i``'s free capacity (negative: take).

        ``restore``: this undoes an earlier take (a trial), so what was known
        not to fit before still does not.
        """
        self.version += 1
        self._remove(i)
        f = self.free[i]
        t = self._tot_free
        t[0] -= f[0] if f[0] > 0 else 0.0
        t[1] -= f[1] if f[1] > 0 else 0.0
        t[2] -= f[2] if f[2] > 0 else 0.0
        f[0] += c
        f[1] += m
        f[2] += g
        t[0] += f[0] if f[0] > 0 else 0.0
        t[1] += f[1] if f[1] > 0 else 0.0
        t[2] += f[2] if f[2] > 0 else 0.0
        self._insert(i)
        if not restore and (c > 0 or m > 0 or g > 0):
            self.failed.clear()  # capacity grew: remembered failures may fit now

    # -- whole workloads ---------------------------------------------------

    def usage_of(self, w: Workload) -> dict[int, Vec]:
        """Resources a running workload holds per node index (cached by id)."""
        u = self._usage.get(w.id)
        if u is None:
            u = {}
            for name, v in w.node_usage().items():
                i = self.index.get(name)
                if i is not None:  # nodes gone from the inventory hold nothing
                    u[i] = v
            self._usage[w.id] = u
        return u

    def occupy(self, w: Workload, *, index: bool = True) -> None:
        """Take a running workload's resources on its nodes (unknown nodes are ignored)."""
        for i, (c, m, g) in self.usage_of(w).items():
            if index:
                self._change(i, -c, -m, -g)
            else:
                f = self.free[i]
                f[0] -= c
                f[1] -= m
                f[2] -= g

    def release(self, w: Workload) -> None:
        """Give back a running workload's resources (a preemption victim, in a trial)."""
        for i, (c, m, g) in self.usage_of(w).items():
            self._change(i, c, m, g)

    def add_hold(self, h: Hold) -> None:
        self.holds.append(h)
        a = h.amount
        self._change(h.node, -a[0], -a[1], -a[2])

    # -- search ------------------------------------------------------------

    def fits_some_node(self, rep: Vec) -> bool:
        """Whether some node's total capacity could hold this replica at all."""
        return any(
            rep[0] <= s[0] + CPU_EPS and rep[1] <= s[1] and rep[2] <= s[2] for s in self.shapes
        )

    def _find_in(self, lst: list[tuple[float, float, int]], c: float, m: float) -> int:
        j = bisect_left(lst, (c - CPU_EPS, _NEG, -1))
        n = len(lst)
        while j < n:
            e = lst[j]
            if e[1] >= m:
                return e[2]
            j += 1
        return -1

    def _spare_fits(self, i: int, c: float, m: float) -> bool:
        """CPU-only replica on GPU node ``i``: fits beside what its free GPUs need."""
        f = self.free[i]
        k = max(f[2], 0.0)
        rc, rm = self.per_gpu[i]
        return f[0] + CPU_EPS >= c + k * rc and f[1] >= m + k * rm

    def _find_spare(self, lst: list[tuple[float, float, int]], c: float, m: float,
                    k: int) -> int:
        j = bisect_left(lst, (c + k * self.min_cpu_per_gpu - CPU_EPS, _NEG, -1))
        n = len(lst)
        while j < n:
            i = lst[j][2]
            if self._spare_fits(i, c, m):
                return i
            j += 1
        return -1

    def find(self, c: float, m: float, g: float) -> int:
        """A node with room for one replica ``(c, m, g)``, or -1."""
        if self.policy is PlacementPolicy.FIRST_FIT:
            for i, f in enumerate(self.free):
                if f[0] + CPU_EPS >= c and f[1] >= m and f[2] >= g:
                    if g == 0 and self.gpu_node[i] and not self.gpu_only and not (
                        self.cpu_on_gpu and self._spare_fits(i, c, m)
                    ):
                        continue
                    return i
            return -1
        if g == 0:
            if self.gpu_only:
                # Nodes with the fewest free GPUs first: keep GPUs together.
                for k in range(self.max_gpu + 1):
                    lst = self.gpu_lists.get(k)
                    if lst:
                        i = self._find_in(lst, c, m)
                        if i >= 0:
                            return i
                return -1
            i = self._find_in(self.cpu_list, c, m)
            if i >= 0 or not self.cpu_on_gpu:
                return i
            # GPU nodes with no free GPU first: nothing to strand there.
            for k in range(self.max_gpu + 1):
                lst = self.gpu_lists.get(k)
                if lst:
                    i = self._find_spare(lst, c, m, k)
                    if i >= 0:
                        return i
            return -1
        for k in range(int(g), self.max_gpu + 1):
            lst = self.gpu_lists.get(k)
            if lst:
                i = self._find_in(lst, c, m)
                if i >= 0:
                    return i
        return -1

    def _known_to_fail(self, reps: Sequence[Vec]) -> bool:
        for f in self.failed:
            for r in reps:
                if r[0] >= f[0] and r[1] >= f[1] and r[2] >= f[2]:
                    return True
        return False

    def _remember_failure(self, r: Vec) -> None:
        for f in self.failed:
            if r[0] >= f[0] and r[1] >= f[1] and r[2] >= f[2]:
                return
        self.failed = [
            f for f in self.failed if not (f[0] >= r[0] and f[1] >= r[1] and f[2] >= r[2])
        ]
        if len(self.failed) < _MAX_FAILED_SHAPES:
            self.failed.append(r)

    def place(self, w: Workload, *, memo: bool = True) -> list[int] | None:
        """Put every replica of ``w`` on a node, or none: node index per replica
        (in ``w.replicas_t`` order), with the capacity taken. None if it does not fit.

        ``memo``: use and feed the list of replica shapes known not to fit; only
        valid when capacity has not been lent to this workload (refunds).
        """
        reps = w.replicas_t
        if memo and self.failed and self._known_to_fail(reps):
            return None
        # Largest first: big replicas have the fewest candidate nodes.
        order = sorted(range(len(reps)), key=lambda j: (reps[j][2], reps[j][0], reps[j][1]),
                       reverse=True)
        out = [-1] * len(reps)
        taken: list[int] = []
        for j in order:
            c, m, g = reps[j]
            i = self.find(c, m, g)
            if i < 0:
                for t in reversed(taken):
                    tc, tm, tg = reps[t]
                    self._change(out[t], tc, tm, tg, restore=True)
                if memo and not taken:
                    self._remember_failure(reps[j])
                return None
            self._change(i, -c, -m, -g)
            out[j] = i
            taken.append(j)
        return out

    def unplace(self, w: Workload, nodes: Sequence[int]) -> None:
        """Undo :meth:`place` (a trial placement)."""
        for (c, m, g), i in zip(w.replicas_t, nodes, strict=True):
            self._change(i, c, m, g, restore=True)

    def placement_names(self, w: Workload, nodes: Sequence[int]) -> dict[str, tuple[str, ...]]:
        """Role -> node name per replica, for a node index list from :meth:`place`."""
        out: dict[str, tuple[str, ...]] = {}
        k = 0
        for role in w.roles:
            out[role.name] = tuple(self.names[i] for i in nodes[k : k + role.replicas])
            k += role.replicas
        return out

    def total_free(self) -> Vec:
        """Sum over nodes of the free capacity (negative free counts as zero)."""
        t = self._tot_free
        return (max(t[0], 0.0), max(t[1], 0.0), max(t[2], 0.0))


def replicas_on(nodes: Sequence[int], w: Workload) -> dict[int, Vec]:
    """Sum of ``w``'s replicas per node index."""
    out: dict[int, Vec] = {}
    for (c, m, g), i in zip(w.replicas_t, nodes, strict=True):
        o = out.get(i)
        out[i] = (c, m, g) if o is None else (o[0] + c, o[1] + m, o[2] + g)
    return out
