"""The per-replica supervisor: a tiny process between the server and a replica.

The pattern of containerd's shim and conmon. A process that is not the server's
child cannot be waited on, so each replica runs under this supervisor, started by
the local executor in its own session (it outlives the server). The supervisor

* owns the attempt's log file: the command's stdout and stderr are one pipe that
  the supervisor copies into the log (order kept), bounded by ``--log-max`` bytes:
  past it the log keeps its head and its tail and says how much it dropped
  (:class:`CappedLog`);
* starts the command in a process group of its own (pgid = the command's pid), as
  ``--user UID:GID`` when given (the supervisor itself stays the server's user, so
  the log and the status directory are out of the command's reach);
* writes ``pid`` into the status directory, then, when the command has ended,
  ``reason`` and ``exit_code`` (each atomically: temp file + rename);
* on SIGTERM or SIGINT sends SIGTERM to the command's process group, waits the
  grace period (from the ``stop`` file the server wrote, else ``--grace``), then
  SIGKILLs the group -- by itself, whether or not the server still exists;
* with ``--timeout`` stops the command the same way once it has run that long;
* when the command ends, stops what is left of its process group (SIGTERM, grace,
  SIGKILL) before recording the exit code, so an ended replica holds nothing.

Status directory (written here, read by :mod:`plinth.executors.local`)::

    supervisor "<pid> <start>"  this supervisor's pid and start time, written first
    pid        "<pid> <start>"  the command's pid and its start time (field 22 of
                                /proc/<pid>/stat, clock ticks since boot), to guard
                                against pid reuse; written once the command started
    stop       "<grace_s>"      written by the server before it signals us
    reason     one word: exited | stopped | timeout | exec-failed | supervisor-error
    exit_code  "<int>"          the command's status, -N if killed by signal N,
                                127/126 when it could not be executed; written last

Only the standard library is used, and the executor runs this file under
``python -I -S`` (see ``BOOT`` in :mod:`plinth.executors.local`) so that neither
the replica's working directory nor its ``PYTHONPATH`` can shadow a module the
supervisor imports. It is also runnable as ``python -m plinth.executors.supervisor``
or ``python .../supervisor.py``.

Second mode, ``--kill-group PGID --leader-start T --grace S``: stop a process group
whose supervisor is gone (SIGTERM, grace, SIGKILL); the executor starts it,
detached, for :meth:`LocalExecutor.stop` on an orphaned replica.
"""

from __future__ import annotations

# The supervisor's start-up is on every replica's path, so it imports little:
# `_signal` (the C module) rather than `signal`, whose enums cost ~3 ms; no
# argparse, subprocess or socket; ctypes only after the command has started.
import _signal as signal
import os
import select
import sys
import time

#: How often leftover members of a process group are looked for (seconds). The
#: members are not our children, so nothing signals their end.
_GROUP_POLL_S = 0.02
#: How long to wait for a SIGKILLed group to vanish before giving up (seconds).
_KILL_WAIT_S = 5.0
_PREFIX = "[plinth-supervisor]"
_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot), or ``None`` when the process
    does not exist or is a zombie. With the pid it identifies a process uniquely."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either nothing or all of it."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class CappedLog:
    """The replica's log file, written only by the supervisor, bounded to about
    ``cap`` bytes: it keeps the first ``cap/4`` bytes (the head), then one marker line
    saying how many bytes were dropped, then the last bytes written (the tail, up to
    ``cap*3/8`` after each compaction, growing to twice that before the next). The
    marker has a fixed width, so a compaction rewrites it in place. ``cap`` 0: no cap.
    """

    def __init__(self, path: str, cap: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.cap = max(int(cap), 0)
        self.size = os.fstat(self.fd).st_size
        self.head = self.cap // 4
        self.tail = (self.cap - self.head) * 3 // 8
        self.dropped = 0

    def _marker(self) -> bytes:
        return (f"\n{_PREFIX} log over its cap of {self.cap} bytes: "
                f"{self.dropped:>20} bytes dropped here\n").encode()  # fmt: skip

    def write(self, data: bytes) -> None:
        os.pwrite(self.fd, data, self.size)  # the only writer: the end is known
        self.size += len(data)
        if not self.cap:
            return
        body = self.head + (len(self._marker()) if self.dropped else 0)
        if self.size - body > 2 * self.tail:
            self._compact(body)

    def _compact(self, body: int) -> None:
        """Keep the head and the last ``tail`` bytes; drop what is between."""
        keep = os.pread(self.fd, self.tail, self.size - self.tail)
        self.dropped += self.size - body - len(keep)
        marker = self._marker()
        os.pwrite(self.fd, marker + keep, self.head)
        os.ftruncate(self.fd, self.head + len(marker) + len(keep))
        self.size = self.head + len(marker) + len(keep)


#: Where supervisor notes go: the replica's log once it is open.
_LOG: CappedLog | None = None
#: The read end of the command's output pipe, drained into _LOG.
_OUTPUT: int | None = None


def _say(message: str) -> None:
    # Supervisor notes are marked lines in the replica's log.
    try:
        if _LOG is not None:
            _LOG.write(f"{_PREFIX} {message}\n".encode())
        else:
            os.write(2, f"{_PREFIX} {message}\n".encode())
    except OSError:
        pass


def _pump(max_bytes: int = 1 << 20) -> bool:
    """Move what the command wrote (up to `max_bytes`) from its pipe to the log;
    False once the pipe is at its end (every writer closed it)."""
    global _OUTPUT
    if _OUTPUT is None:
        return False
    moved = 0
    while moved < max_bytes:
        try:
            data = os.read(_OUTPUT, 65536)
        except BlockingIOError:
            return True
        if not data:
            os.close(_OUTPUT)
            _OUTPUT = None
            return False
        moved += len(data)
        if _LOG is not None:
            try:
                _LOG.write(data)
            except OSError:  # e.g. the disk is full: the command must not block on us
                pass
    return True


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _reap_orphans() -> None:
    """Reap every ended child. As a subreaper the supervisor inherits the replica's
    orphaned descendants; their zombies would otherwise keep the group "alive"."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_subreaper() -> None:
    """Orphaned descendants of the replica get reparented to us, not to pid 1 (which,
    in a container, may never reap them). Linux only; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + max(seconds, 0.0)
    while True:
        _reap_orphans()
        _pump()  # a member blocked on a full pipe would never see its SIGTERM
        if not _group_exists(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_GROUP_POLL_S)


def _finish_group(pgid: int, grace_s: float, term_sent: bool, kill_sent: bool = False) -> None:
    """Make sure nothing of process group ``pgid`` survives: SIGTERM (unless already
    sent), wait up to ``grace_s`` for it to vanish, then SIGKILL and wait a little."""
    if _wait_group_gone(pgid, 0):
        return
    if not kill_sent:
        if not term_sent:
            _say(f"the command ended; SIGTERM to what is left of process group {pgid}")
            _signal_group(pgid, signal.SIGTERM)
        if _wait_group_gone(pgid, grace_s):
            return
        _say(f"process group {pgid} still alive after {grace_s:g}s grace: SIGKILL")
    _signal_group(pgid, signal.SIGKILL)
    _wait_group_gone(pgid, _KILL_WAIT_S)


def _spawn_as(command: list[str], uid: int, gid: int, output: int) -> int:
    """Start ``command`` as ``uid``:``gid`` (no supplementary groups) in a process
    group of its own; return its pid. posix_spawn cannot change the user, so: fork,
    drop privileges in the child, exec. The child reports a failure before or at
    exec through a close-on-exec pipe, raised here as the OSError it met."""
    err_r, err_w = os.pipe()  # non-inheritable: closed by a successful exec
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe-ish calls, then exec or _exit
        try:
            os.close(err_r)
            os.setpgid(0, 0)
            os.dup2(output, 1)
            os.dup2(output, 2)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.execvpe(command[0], command, os.environ)
        except OSError as exc:
            os.write(err_w, f"{exc.errno or 0}".encode())
        except BaseException:  # noqa: BLE001 - never return into the supervisor's code
            os.write(err_w, b"0")
        os._exit(127)
    os.close(err_w)
    try:
        data = b""
        while chunk := os.read(err_r, 64):
            data += chunk
    finally:
        os.close(err_r)
    if data:
        os.waitpid(pid, 0)
        code = int(data or b"0")
        raise (FileNotFoundError if code == 2 else OSError)(code, os.strerror(code))
    return pid


def _parse_user(value: str) -> tuple[int, int]:
    uid, _, gid = value.partition(":")
    return int(uid), int(gid or uid)


def _read_grace(status_dir: str, default: float) -> float:
    try:
        with open(os.path.join(status_dir, "stop")) as f:
            return max(float(f.read().strip() or default), 0.0)
    except (OSError, ValueError):
        return default


class _Supervisor:
    def __init__(
        self,
        status_dir: str,
        grace_s: float,
        timeout_s: float | None,
        run_as: tuple[int, int] | None = None,
        log_max: int = 0,
    ) -> None:
        self.status_dir = status_dir
        self.run_as = run_as
        self.log_max = log_max
        self.grace_s = grace_s
        self.timeout_s = timeout_s
        self.stop_requested = False
        self.term_sent = False
        self.kill_sent = False
        self.kill_at: float | None = None
        self.reason = "exited"

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        # Only record: the loop acts on it (the wakeup fd interrupts its select).
        self.stop_requested = True

    def _begin_stop(self, pgid: int, grace_s: float, reason: str) -> None:
        kill_at = time.monotonic() + grace_s
        # A second stop may shorten the grace, never lengthen it.
        self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)
        if not self.term_sent:
            self.reason = reason
            self.term_sent = True
            _say(f"{reason}: SIGTERM to process group {pgid}, SIGKILL in {grace_s:g}s")
            _signal_group(pgid, signal.SIGTERM)

    def run(self, command: list[str], log_path: str) -> int:
        os.makedirs(self.status_dir, exist_ok=True)  # the executor leaves it to us
        # Who we are, so that a server can tell us from a later process with our pid.
        write_atomic(
            os.path.join(self.status_dir, "supervisor"),
            f"{os.getpid()} {proc_start_time(os.getpid()) or 0}\n",
        )
        wake_r, wake_w = os.pipe()  # non-inheritable (PEP 446): the command never sees it
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        # Handlers, not SIG_IGN: caught signals are reset to default in the
        # command at exec, ignored ones would stay ignored there.
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda s, f: None)  # the server's terminal going away
        signal.signal(signal.SIGCHLD, lambda s, f: None)  # only to write the wakeup fd

        global _LOG, _OUTPUT
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        _LOG = CappedLog(log_path, self.log_max)
        # The command's stdout and stderr are one pipe that only we read: the order of
        # lines is kept, the log stays bounded, and the command never holds the log
        # file itself (it may be another user). fd 0 is /dev/null from the executor,
        # and the executor closed every other fd of the server.
        _OUTPUT, out_w = os.pipe()  # non-inheritable; dup2'd to the command's 1 and 2
        os.set_blocking(_OUTPUT, False)

        try:
            if self.run_as is None:
                child_pid = os.posix_spawnp(
                    command[0],
                    command,
                    os.environ,
                    setpgroup=0,  # its own process group, pgid = its pid
                    # Python ignores these; the command gets the defaults back.
                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                    setsigmask=(),
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, out_w, 1),
                        (os.POSIX_SPAWN_DUP2, out_w, 2),
                    ],
                )
            else:
                child_pid = _spawn_as(command, *self.run_as, output=out_w)
        except OSError as exc:
            os.close(out_w)
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            why = exc.strerror if exc.errno else "not executable"
            if self.run_as is not None and not isinstance(exc, FileNotFoundError):
                why += (f" as the group's OS user (uid {self.run_as[0]}): install the program"
                        " where that user can reach it (not under a 0700 home such as /root)")
            _say(f"cannot execute {command[0]!r}: {why}")
            self._record("exec-failed", code)
            return code
        os.close(out_w)
        pgid = child_pid
        start = proc_start_time(child_pid)
        write_atomic(os.path.join(self.status_dir, "pid"), f"{child_pid} {start or 0}\n")
        _become_subreaper()
        # The server writes `stop` before it checks for `pid`: one of us sees the other.
        if os.path.exists(os.path.join(self.status_dir, "stop")):
            self.stop_requested = True
        timeout_at = None if self.timeout_s is None else time.monotonic() + self.timeout_s

        code: int | None = None
        while True:
            # Reap everything: our command, and orphans of it we inherited.
            while code is None:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:  # pragma: no cover - the command is our child
                    break
                if pid == 0:
                    break
                if pid == child_pid:
                    code = os.waitstatus_to_exitcode(status)
            if code is not None:
                break
            now = time.monotonic()
            if self.stop_requested:
                self.stop_requested = False
                self._begin_stop(pgid, _read_grace(self.status_dir, self.grace_s), "stopped")
            if timeout_at is not None and now >= timeout_at and not self.term_sent:
                self._begin_stop(pgid, self.grace_s, "timeout")
            if self.kill_at is not None and now >= self.kill_at and not self.kill_sent:
                self.kill_sent = True
                _say(f"still running after the grace period: SIGKILL to process group {pgid}")
                _signal_group(pgid, signal.SIGKILL)
            waits = []
            if self.kill_at is not None and not self.kill_sent:
                waits.append(self.kill_at - now)
            if timeout_at is not None and not self.term_sent:
                waits.append(timeout_at - now)
            readable, _, _ = select.select(
                [wake_r] if _OUTPUT is None else [wake_r, _OUTPUT], [], [],
                max(min(waits), 0.0) if waits else None,
            )  # fmt: skip
            if _OUTPUT is not None and _OUTPUT in readable:
                _pump()
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

        # The command is over; whatever it left in its group goes too.
        remaining = self.grace_s
        if self.kill_at is not None:
            remaining = max(self.kill_at - time.monotonic(), 0.0)
        _pump()
        _finish_group(pgid, remaining, term_sent=self.term_sent, kill_sent=self.kill_sent)
        while _pump():  # the rest; writers outside the group (daemons) get no wait
            if not select.select([_OUTPUT], [], [], 0.05)[0]:
                break
        self._record(self.reason, code)
        return code

    def _record(self, reason: str, code: int) -> None:
        write_atomic(os.path.join(self.status_dir, "reason"), reason + "\n")
        write_atomic(os.path.join(self.status_dir, "exit_code"), f"{code}\n")


def kill_group(pgid: int, leader_start: int, grace_s: float) -> int:
    """Stop an orphaned process group (its supervisor is gone); see the module docstring.

    A process whose pid equals ``pgid`` but whose start time differs is a newer,
    unrelated process that reused the number: then nothing is signalled.
    """
    start = proc_start_time(pgid)
    if start is not None and leader_start and start != leader_start:
        return 0
    _finish_group(pgid, grace_s, term_sent=False)
    return 0


_USAGE = """\
usage: python -m plinth.executors.supervisor --status-dir DIR --log FILE
                 [--grace SECONDS] [--timeout SECONDS] [--user UID:GID]
                 [--log-max BYTES] -- COMMAND [ARG ...]
       python -m plinth.executors.supervisor --kill-group PGID [--leader-start TICKS]
                 [--grace SECONDS]

Run one replica: own its log, record its pid and exit code, escalate SIGTERM to
SIGKILL after the grace period (default 10 s). The second form stops an orphaned
process group.
"""


class _Args:
    status_dir: str = ""
    log: str = ""
    grace: float = 10.0
    timeout: float | None = None
    kill_group: int | None = None
    leader_start: int = 0
    user: tuple[int, int] | None = None
    log_max: int = 0
    command: list[str]


_OPTIONS = {
    "--status-dir": ("status_dir", str),
    "--log": ("log", str),
    "--grace": ("grace", float),
    "--timeout": ("timeout", float),
    "--kill-group": ("kill_group", int),
    "--leader-start": ("leader_start", int),
    "--user": ("user", _parse_user),
    "--log-max": ("log_max", int),
}


def _parse(argv: list[str]) -> _Args:
    """Options before ``--``, the command after it. Exits 2 with usage on errors."""
    args = _Args()
    i = 0
    while i < len(argv) and argv[i] != "--":
        flag, eq, value = argv[i].partition("=")
        if flag in ("-h", "--help"):
            sys.stdout.write(_USAGE)
            raise SystemExit(0)
        if flag not in _OPTIONS:
            _usage_error(f"unknown option {argv[i]!r}")
        if not eq:
            i += 1
            if i >= len(argv):
                _usage_error(f"{flag} needs a value")
            value = argv[i]
        attr, convert = _OPTIONS[flag]
        try:
            setattr(args, attr, convert(value))
        except ValueError:
            _usage_error(f"{flag}: invalid value {value!r}")
        i += 1
    args.command = argv[i + 1 :]
    if args.kill_group is None and not (args.status_dir and args.log and args.command):
        _usage_error("--status-dir, --log and a command after -- are required")
    return args


def _usage_error(message: str) -> None:
    sys.stderr.write(f"{_USAGE}\nerror: {message}\n")
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.kill_group is not None:
        return kill_group(args.kill_group, args.leader_start, args.grace)
    supervisor = _Supervisor(args.status_dir, args.grace, args.timeout, args.user, args.log_max)
    try:
        supervisor.run(args.command, args.log)
    except OSError as exc:  # e.g. the log directory is not writable
        sys.stderr.write(f"{_PREFIX} failed: {exc}\n")
        # Record an outcome anyway, so that the server does not wait for one.
        try:
            supervisor._record("supervisor-error", 126)
        except OSError:
            pass
        return 1
    # Our own status does not matter; the command's is in exit_code.
    return 0


def entry(argv: list[str]) -> None:
    """Run :func:`main` and exit the process at once."""
    code = main(argv)
    # Everything is recorded; skip the interpreter's teardown (it only costs CPU
    # that the next replica's start could use).
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    entry(sys.argv[1:])
