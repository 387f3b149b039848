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


class _Loop:
    """An event loop stand-in that records each call_soon_threadsafe (and runs it)."""

    def __init__(self, loop) -> None:
        self.loop, self.wakeups = loop, 0

    def call_soon_threadsafe(self, fn, *args):
        self.wakeups += 1
        return self.loop.call_soon_threadsafe(fn, *args)


def test_async_callers_get_one_loop_wakeup_a_batch():
    import asyncio

    gate = _Gate()
    b = Batcher(gate, max_batch_rows=10, max_delay_s=0, max_queue_rows=100)

    async def main():
        loop = _Loop(asyncio.get_running_loop())
        first = b.submit_async("a", rows=1)
        assert gate.entered.wait(30)  # the worker is busy with "a"; the rest queue up
        rest = [b.submit_async(x, rows=1) for x in ("b", "bad", "c")]
        for item in b._queue:  # route the queued batch's results through the recorder
            item.loop = loop
        gate.release.set()
        got = await asyncio.gather(first, *rest, return_exceptions=True)
        return loop.wakeups, got

    wakeups, got = asyncio.run(main())
    b.close()
    assert got[:2] == ["ok a", "ok b"] and got[3] == "ok c"
    assert isinstance(got[2], ValueError)  # one item's failure stays its own
    assert gate.batches == [["a"], ["b", "bad", "c"]]
    assert wakeups == 1  # three requests, one batch, one call into the loop


def test_a_cancelled_async_caller_does_not_break_the_batch():
    import asyncio

    gate = _Gate()
    b = Batcher(gate, max_batch_rows=10, max_delay_s=0)

    async def main():
        first = b.submit_async("a", rows=1)
        assert gate.entered.wait(30)
        gone, kept = b.submit_async("b", rows=1), b.submit_async("c", rows=1)
        gone.cancel()  # its client disconnected
        gate.release.set()
        return await first, await kept

    assert asyncio.run(main()) == ("ok a", "ok c")
    b.close()
