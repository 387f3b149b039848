"""A replica's exit wakes the control loop (pidfd), without waiting for the poll tick."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from plinth.services.exit_watcher import ExitWatcher


def test_callback_runs_when_a_watched_process_ends() -> None:
    woke = threading.Event()
    w = ExitWatcher(woke.set)
    if not w.enabled:
        pytest.skip("pidfd_open is not available on this platform")
    w.start()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)  # fmt: skip
    try:
        w.watch(proc.pid)
        w.watch(proc.pid)  # watching twice is harmless
        assert not woke.wait(0.2)  # still running: no wake-up
        proc.stdin.close()  # type: ignore[union-attr]  # lets it end
        assert woke.wait(10), "the exit did not wake the callback"
        assert w.take_ended() == [proc.pid]  # which pid ended, reported once
        assert w.take_ended() == []
    finally:
        proc.wait()
        w.close()


def test_watching_a_gone_pid_is_a_no_op() -> None:
    w = ExitWatcher(lambda: None)
    w.start()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    w.watch(proc.pid)  # reaped already: pidfd_open fails, nothing happens
    w.watch(-1)
    w.close()
