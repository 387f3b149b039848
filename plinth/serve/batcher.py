"""The dynamic batcher: requests queue up and one worker thread runs them together.

After Triton's dynamic batcher (STYLE.md, "Serving"), with its two knobs:

- ``max_batch_rows``: a batch holds at most this many rows (a request of 100 ranking
  candidates is 100 rows); a single request larger than that is refused up front.
- ``max_delay_s``: once the first request of a batch is waiting, the worker waits at most
  this long (seconds) for more before it runs what it has. The default, 0, runs at once
  what is queued: under load, requests queue while the previous batch runs, so batches
  grow with the load by themselves, and a lone request pays no timer wake-up (on a
  loaded machine each wake-up of a thread can cost milliseconds).

The queue is bounded (``max_queue_rows``): ``submit`` raises :class:`QueueFull` instead of
letting latency grow without limit, and the caller answers 503 with ``Retry-After``.

``run(items)`` is called on the worker thread with the batch's items in arrival order and
returns one result per item (an exception object for an item that failed alone); an
exception raised by ``run`` itself fails every item of the batch. The batcher is threading
underneath; an asyncio caller awaits ``batcher.submit_async(...)``: the results of one
batch reach an event loop in one ``call_soon_threadsafe`` (one wake-up of the loop a batch,
not one a request, and no ``concurrent.futures.Future`` per request).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchTooLarge", "Batcher", "QueueFull"]


class QueueFull(RuntimeError):
    """The queue holds ``max_queue_rows`` rows already; retry after ``retry_after_s``."""

    def __init__(self, queued_rows: int, retry_after_s: int) -> None:
        super().__init__(f"the server's queue is full ({queued_rows} rows waiting); "
                         f"retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class BatchTooLarge(ValueError):
    """One request has more rows than a batch may hold."""


@dataclass
class _Item:
    payload: Any
    rows: int
    future: Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None  # set: an asyncio future of that loop
    enqueued: float = field(default_factory=time.monotonic)


def _settle(future: Future | asyncio.Future, result: Any) -> None:
    if future.done():  # cancelled: its caller is gone
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _settle_all(settled: list[tuple[asyncio.Future, Any]]) -> None:
    for future, result in settled:
        _settle(future, result)


RunFn = Callable[[Sequence[Any]], Sequence[Any]]


class Batcher:
    """Collects submitted items into batches of at most ``max_batch_rows`` rows and hands
    them to ``run`` on one worker thread (see the module docstring)."""

    def __init__(self, run: RunFn, max_batch_rows: int = 1024, max_delay_s: float = 0.0,
                 max_queue_rows: int = 16384,
                 on_batch: Callable[[int, int], None] | None = None) -> None:
        if max_batch_rows < 1 or max_queue_rows < max_batch_rows or max_delay_s < 0:
            raise ValueError("need max_batch_rows >= 1, max_queue_rows >= max_batch_rows, "
                             "max_delay_s >= 0")
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max_delay_s
        self.max_queue_rows = max_queue_rows
        self._run = run
        self._on_batch = on_batch  # (requests, rows) of each batch run, for metrics
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="plinth-batcher", daemon=True)
        self._thread.start()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def submit(self, payload: Any, rows: int) -> Future:
        """Queue ``payload`` (``rows`` rows); its future resolves to ``run``'s result for it.

        Raises :class:`BatchTooLarge` or :class:`QueueFull` at once instead of queueing."""
        item = _Item(payload, rows, Future())
        self._enqueue(item)
        return item.future

    def submit_async(self, payload: Any, rows: int) -> asyncio.Future:
        """As :meth:`submit`, from a coroutine: an asyncio future of the running loop."""
        loop = asyncio.get_running_loop()
        item = _Item(payload, rows, loop.create_future(), loop)
        self._enqueue(item)
        return item.future

    def _enqueue(self, item: _Item) -> None:
        rows = item.rows
        if rows > self.max_batch_rows:
            raise BatchTooLarge(f"{rows} rows in one request; at most {self.max_batch_rows} "
                                "are allowed: split the request")
        with self._cv:
            if self._stopping:
                raise RuntimeError("the batcher is stopped")
            if self._queued_rows + rows > self.max_queue_rows:
                raise QueueFull(self._queued_rows, retry_after_s=1)
            self._queue.append(item)
            self._queued_rows += rows
            self._cv.notify()

    def close(self) -> None:
        """Stop after the queued items are run."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join()

    def _take_batch(self) -> list[_Item] | None:
        """Wait for the next batch: full, or the first item's delay spent; None when stopped
        with an empty queue."""
        with self._cv:
            while not self._queue:
                if self._stopping:
                    return None
                self._cv.wait()
            deadline = self._queue[0].enqueued + self.max_delay_s
            while (self._queued_rows < self.max_batch_rows and not self._stopping
                   and (left := deadline - time.monotonic()) > 0):
                self._cv.wait(left)
            batch, rows = [], 0
            while self._queue and rows + self._queue[0].rows <= self.max_batch_rows:
                item = self._queue.popleft()
                batch.append(item)
                rows += item.rows
            self._queued_rows -= rows
            return batch

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            if self._on_batch is not None:
                self._on_batch(len(batch), sum(i.rows for i in batch))
            try:
                results = list(self._run([i.payload for i in batch]))
            except BaseException as e:  # noqa: BLE001 - delivered to every waiting caller
                results = [e] * len(batch)
            if len(results) != len(batch):
                results = [RuntimeError(f"run returned {len(results)} results for "
                                        f"{len(batch)} items")] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
            for item, result in zip(batch, results, strict=True):
                if item.loop is None:
                    _settle(item.future, result)
                else:
                    by_loop.setdefault(item.loop, []).append((item.future, result))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle_all, settled)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
