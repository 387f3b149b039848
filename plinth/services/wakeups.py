"""When the control loop runs a cycle: wake-ups now, and due times later.

Any thread may ``wake()`` the loop (a submit, a cancel, a replica's exit) or ask for
a cycle ``due_in(seconds)`` (a retry's backoff ends, a deadline or an expansion's
end comes). The loop's thread waits with ``wait()`` and learns whether the cycle
must look at every running replica (``full``) or only at those whose exits the
exit watcher reported.
"""

from __future__ import annotations

import heapq
import threading
import time

__all__ = ["Wakeups"]


class Wakeups:
    """A wake-up flag, a heap of due times (monotonic seconds) and the "full look" flag."""

    def __init__(self, poll_interval_s: float) -> None:
        self.poll_interval_s = poll_interval_s
        self._event = threading.Event()
        self._due: list[float] = []
        self._due_lock = threading.Lock()  # request threads add due times too
        self._full = True  # the next cycle looks at every running replica
        self._full_lock = threading.Lock()
        self.loop_thread: threading.Thread | None = None

    def wake(self, full: bool = True) -> None:
        """Run a cycle now; `full=False` for an exit wake-up (look at ended replicas only)."""
        if full:
            with self._full_lock:
                self._full = True
        self._event.set()

    def exit_seen(self) -> None:
        """The exit watcher saw a supervisor end (called from its thread)."""
        self._event.set()

    def due_in(self, delay_s: float) -> None:
        """Make sure a full cycle runs `delay_s` seconds from now, even when the poll
        interval is longer."""
        when = time.monotonic() + max(delay_s, 0.0)
        with self._due_lock:
            earliest = not self._due or when < self._due[0]
            heapq.heappush(self._due, when)
        if earliest and threading.current_thread() is not self.loop_thread:
            self._event.set()  # the loop is waiting for a later time: let it look again

    def wait(self, last_full: float, exits_watched: bool) -> bool:
        """Block until woken, a due time, or the poll interval; return whether the cycle
        must be full: yes after a wake(), a due time, the poll tick, or when no full
        look came for a poll interval (steady exits); no when only exits woke it."""
        woken = self._event.wait(self._next_wait())
        self._event.clear()  # before taking the flag: a later wake() is seen next time
        due = self._take_due()
        with self._full_lock:
            overdue = time.monotonic() - last_full >= self.poll_interval_s
            full = self._full or not woken or due or overdue or not exits_watched
            self._full = False
        return full

    def look_again(self) -> None:
        """The last cycle failed: the next one looks at everything."""
        with self._full_lock:
            self._full = True

    def _next_wait(self) -> float:
        wait = self.poll_interval_s
        with self._due_lock:
            if self._due:
                wait = min(wait, self._due[0] - time.monotonic())
        return max(wait, 0.0)

    def _take_due(self) -> bool:
        """Drop the due times that have come; True if there were any."""
        now = time.monotonic()
        came = False
        with self._due_lock:
            while self._due and self._due[0] <= now:
                heapq.heappop(self._due)
                came = True
        return came
