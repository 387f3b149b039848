"""The dynamic batcher: requests waiting together run as one batch within the row limit;
an oversized request and a full queue are refused at once; one item's failure stays its
own."""

import threading

import pytest

from plinth.serve.batcher import Batcher, BatchTooLarge, QueueFull


class _Gate:
    """A `run` that blocks its first batch until released, recording every batch."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items):
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(30)
        return [ValueError(f"bad {i}") if i == "bad" else f"ok {i}" for i in items]


def test_waiting_requests_run_together_up_to_the_row_limit():
    gate = _Gate()
    b = Batcher(gate, max_batch_rows=10, max_delay_s=0, max_queue_rows=100)
    first = b.submit("a", rows=1)
    assert gate.entered.wait(30)  # the worker is busy with "a"; the rest queue up
    futs = [b.submit(x, rows=4) for x in ("b", "c", "d")]
    gate.release.set()
    assert [f.result(30) for f in [first, *futs]] == ["ok a", "ok b", "ok c", "ok d"]
    b.close()
    assert gate.batches == [["a"], ["b", "c"], ["d"]]  # 4 + 4 rows fit in 10, 12 do not


def test_oversized_request_and_full_queue_are_refused_at_once():
    gate = _Gate()
    b = Batcher(gate, max_batch_rows=4, max_delay_s=0, max_queue_rows=8)
    with pytest.raises(BatchTooLarge, match="5 rows in one request; at most 4"):
        b.submit("x", rows=5)
    b.submit("a", rows=1)
    assert gate.entered.wait(30)
    b.submit("b", rows=4)
    b.submit("c", rows=4)
    with pytest.raises(QueueFull) as e:
        b.submit("d", rows=1)
    assert e.value.retry_after_s >= 1
    gate.release.set()
    b.close()


def test_one_failed_item_fails_only_itself():
    gate = _Gate()
    gate.release.set()
    b = Batcher(gate, max_batch_rows=10, max_delay_s=0.05)
    bad, good = b.submit("bad", rows=1), b.submit("g", rows=1)
    assert good.result(30) == "ok g"
    with pytest.raises(ValueError, match="bad bad"):
        bad.result(30)
    b.close()


def test_knobs_are_checked():
    with pytest.raises(ValueError, match="max_batch_rows >= 1"):
        Batcher(lambda items: items, max_batch_rows=0)
