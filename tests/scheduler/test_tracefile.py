"""The trace format of ``plinth scheduler simulate``: round trip, defaults, and errors
that name their line."""

from __future__ import annotations

import json

import pytest

from plinth.scheduler.trace import make_groups, make_nodes, make_trace
from plinth.scheduler.tracefile import TraceError, dump_trace, load_trace


def test_round_trip_keeps_every_value() -> None:
    nodes = make_nodes(6)
    groups = make_groups(nodes, 3, lend_all=True)
    items = make_trace(nodes=nodes, groups=groups, hours=3, load=1.0, seed=4)
    back = load_trace(dump_trace(items, nodes, groups))
    assert back.nodes == nodes and back.groups == groups
    assert back.items == items


def test_defaults_and_limits_leave_out_resources() -> None:
    lines = [
        "# a comment",
        json.dumps({"type": "cluster", "nodes": [{"name": "n1", "cpu": 4, "memory": 4096}],
                    "groups": [{"name": "ads", "quota": {"cpu": 2},
                                "borrow_limit": {"cpu": 0}}]}),
        "",
        json.dumps({"id": "b", "group": "ads", "user": "u", "arrival": 5, "max_runtime": 60,
                    "roles": {"main": {"resources": {"cpu": 1}}}}),
        json.dumps({"id": "a", "group": "ads", "user": "u", "arrival": 1, "max_runtime": 60,
                    "runtime": 30, "roles": {"main": {"replicas": 2,
                                                      "resources": {"cpu": 1}}}}),
    ]
    t = load_trace(lines)
    assert [it.workload.id for it in t.items] == ["a", "b"]  # by arrival
    b = t.items[1]
    assert b.actual_s == 60 and b.workload.kind == "job" and b.workload.priority == "normal"
    g = t.groups[0]
    assert g.borrow_limit.cpu == 0 and g.borrow_limit.memory > 10**12  # memory: no cap
    assert g.lend_limit is None


@pytest.mark.parametrize(("line", "want"), [
    ("{", "trace line 1:"),
    ("[1]", "each line must be a JSON object"),
    ('{"type": "x"}', "unknown type 'x'"),
    (('{"id": "a", "group": "g", "user": "u", "arrival": -1, "max_runtime": 1,'
     ' "roles": {"m": {"resources": {}}}}'), "arrival must be a finite number >= 0"),
    (('{"id": "a", "group": "g", "user": "u", "arrival": 0, "max_runtime": 1,'
     ' "roles": {"m": {"resources": {"tpu": 1}}}}'), "unknown resource 'tpu'"),
    ('{"id": "a", "group": "g", "user": "u", "arrival": 0, "max_runtime": 1, "roles": {}}',
     "'roles' must map"),
])
def test_errors_name_the_line(line: str, want: str) -> None:
    with pytest.raises(TraceError) as e:
        load_trace(["# header", line] if want != "trace line 1:" else [line])
    assert want in str(e.value)
    assert "trace line" in str(e.value)
