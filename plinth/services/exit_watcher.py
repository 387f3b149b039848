"""Wake the control loop the moment a replica's process ends (Linux pidfds).

The control loop polls replicas every ``scheduler.poll_interval`` anyway; this makes a
replica's exit an event as well, so the next job of a full node starts at once
instead of at the next tick. It only ever *wakes* the loop: what ended, and how, is
still read through ``executor.poll``, so a missed or spurious wake-up is harmless.

A pidfd (``os.pidfd_open``, Linux 5.3+) becomes readable when its process exits, and
works for processes that are not our children -- e.g. replica supervisors re-adopted
after a restart. Where pidfds are unavailable the watcher does nothing.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

__all__ = ["ExitWatcher"]

log = logging.getLogger("plinth.exit_watcher")

MAX_WATCHED = 512  # pidfds held at most (file descriptors are a finite resource)


class ExitWatcher:
    """Calls `on_exit()` (from its own thread) whenever a watched pid ends; the pids that
    ended since the last call are returned by ``take_ended()``."""

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self._on_exit = on_exit
        self._fds: dict[int, int] = {}  # pidfd -> pid
        self._pids: set[int] = set()
        self._ended: list[int] = []  # watched pids that ended, not yet taken
        self._lock = threading.Lock()
        # epoll, not poll: a pidfd registered from another thread is seen by an epoll_wait
        # already in progress, so watch() needs no wake-up of this thread (a pipe write
        # and a GIL hand-over, ~1 ms on a busy machine, on every launch).
        self._poller = select.epoll() if hasattr(select, "epoll") else None
        self._rd, self._wr = os.pipe()  # interrupts the wait on close
        os.set_blocking(self._wr, False)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.enabled = hasattr(os, "pidfd_open") and self._poller is not None
        if self._poller is not None:
            self._poller.register(self._rd, select.EPOLLIN)

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(
                target=self._run, name="plinth-exit-watcher", daemon=True
            )
            self._thread.start()

    def watch(self, pid: int) -> None:
        """Watch `pid` (no-op when already watched, gone, or pidfds are unavailable)."""
        if not self.enabled or pid <= 0:
            return
        with self._lock:
            if pid in self._pids or self._closed or len(self._fds) >= MAX_WATCHED:
                return  # over the cap, the poll tick still notices the exit
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # already gone (the next poll tick sees it) or not permitted
                return
            self._fds[fd] = pid
            self._pids.add(pid)
            assert self._poller is not None
            self._poller.register(fd, select.EPOLLIN)

    def take_ended(self) -> list[int]:
        """The watched pids that ended since the last call (each reported once)."""
        with self._lock:
            ended, self._ended = self._ended, []
        return ended

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._interrupt()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
            self._pids.clear()
        os.close(self._rd)
        os.close(self._wr)
        if self._poller is not None:
            self._poller.close()

    def _interrupt(self) -> None:
        try:
            os.write(self._wr, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: poll() will return anyway

    def _run(self) -> None:
        assert self._poller is not None
        while True:
            try:
                ready = self._poller.poll()
            except OSError:  # pragma: no cover - e.g. EINTR on old kernels
                continue
            ended = False
            with self._lock:
                if self._closed:
                    return
                for fd, _ in ready:
                    if fd == self._rd:
                        try:
                            os.read(self._rd, 4096)
                        except BlockingIOError:  # pragma: no cover
                            pass
                        continue
                    pid = self._fds.pop(fd, None)
                    if pid is not None:
                        self._poller.unregister(fd)
                        os.close(fd)
                        self._pids.discard(pid)
                        self._ended.append(pid)
                        ended = True
            if ended:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("exit callback failed")
