"""The supervisor owns the log and bounds it: head and tail kept, the drop said."""

from __future__ import annotations

import os
from pathlib import Path

from _executor_helpers import DEADLINE_S, py

from plinth.executors.local import LocalExecutor
from plinth.executors.supervisor import CappedLog

CAP = 64 * 1024


def test_a_flooding_replica_keeps_head_and_tail_and_says_what_was_dropped(make_spec) -> None:
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}], log_max_bytes=CAP)
    code = (
        "import sys\n"
        "print('FIRST LINE', flush=True)\n"
        "for i in range(200000): sys.stdout.write(f'line {i:06d}\\n')\n"  # ~2.4 MB
        "print('LAST LINE', flush=True)\n"
    )
    handle = ex.launch(make_spec(py(code)))
    assert ex.wait(handle, DEADLINE_S) == 0
    data = Path(handle["log_path"]).read_bytes()
    assert len(data) <= CAP + 200, len(data)
    assert data.startswith(b"FIRST LINE\nline 000000\n")
    assert data.rstrip().endswith(b"line 199999\nLAST LINE")
    marker = [ln for ln in data.split(b"\n") if b"bytes dropped here" in ln]
    assert len(marker) == 1 and b"log over its cap of 65536 bytes" in marker[0]
    dropped = int(marker[0].split(b":")[1].split()[0])
    assert dropped + len(data) - len(marker[0]) - 2 >= 200000 * 12  # nothing else lost


def test_capped_log_compacts_in_place(tmp_path: Path) -> None:
    log = CappedLog(os.fspath(tmp_path / "x.log"), 400)
    for i in range(1000):
        log.write(f"{i:04d}\n".encode())
    data = (tmp_path / "x.log").read_bytes()
    head, _, rest = data.partition(b"\n[plinth-supervisor]")
    assert head.startswith(b"0000\n0001\n") and len(head) <= 100
    assert data.endswith(b"0999\n") and len(data) < 400 + 100
    dropped = int(rest.split(b":")[1].split()[0])
    tail = rest.split(b"dropped here\n", 1)[1]
    assert len(head) + dropped + len(tail) == 5000


def test_no_cap_keeps_everything(make_spec) -> None:
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}])
    handle = ex.launch(make_spec(py("print('x' * 100000)")))
    assert ex.wait(handle, DEADLINE_S) == 0
    assert Path(handle["log_path"]).stat().st_size == 100001
