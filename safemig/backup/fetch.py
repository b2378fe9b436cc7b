"""The restore side's download and its stall bound: no S3 or pg_restore that stops can hang a restore.

* :class:`Download` - one ``GetObject`` read by a daemon thread into a short queue. The
  caller waits for chunks in ticks, so a frozen S3 (a socket that stays open and silent)
  cannot pin it for botocore's read timeout times its retries, and an abandoned read does
  not keep the process alive at exit (``concurrent.futures`` would join such a thread).
* :class:`RestoreBound` - ``backup.stall_timeout`` for the restore, like the backup's: a
  :class:`~safemig.backup.watchdog.Watchdog` fed by every chunk from S3, every chunk
  pg_restore accepted, and, while pg_restore works without reading from us (its indexes, a
  restore from the local copy), a probe of its progress (see :meth:`RestoreBound._probe`).
  When nothing moved for that long it stops pg_restore (and its ``-j`` workers) and ends its
  sessions on the server; the waiting thread then raises :class:`RestoreStalled` (exit 3).
"""

from __future__ import annotations

import os
import queue
import signal
import termios
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from safemig.backup.pgdump import ChildProcess, queued_bytes
from safemig.backup.store import storage_error
from safemig.backup.watchdog import DaemonPool, Watchdog, run_bounded
from safemig.errors import ExternalError, SafemigError

CHUNK = 1024 * 1024
_AHEAD = 8  # chunks read ahead of the consumer (8 MiB)
_END = object()
T = TypeVar("T")
# pg_restore's sessions that are working: active and not waiting for a lock another session
# holds, nor for pg_restore itself (which then reads nothing from us either).
_SESSIONS = """
SELECT count(*) FILTER (WHERE state = 'active' AND coalesce(wait_event_type, '') NOT IN ('Lock', 'Client'))
FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()
"""
_BLOCKERS = """
SELECT w.pid, b.pid, b.state, b.application_name
FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
JOIN pg_stat_activity b ON b.pid = bp.pid WHERE w.pid = ANY(%s)
"""
_TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
_MONITOR_SETTINGS = (
    "SELECT set_config('idle_session_timeout', '0', false), set_config('statement_timeout', %s, false),"
    " set_config('lock_timeout', '0', false)"
)
# the steps' sessions: lock and statement waits end at the bound; a vanished client ends the statement
_STEP_SETTINGS = (
    "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false),"
    " set_config('idle_session_timeout', '0', false)"
)
_PG_MAX_MS = 2147483647  # the largest lock_timeout/statement_timeout PostgreSQL takes
_CLIENT_CHECK = "SET client_connection_check_interval = '1s'"


class RestoreStalled(ExternalError):
    """No progress on the download or in pg_restore for ``backup.stall_timeout`` (exit 3)."""


def format_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


class RestoreBound:
    """The stall bound of one restore (or verification): what moves, and what to stop when nothing does.

    ``target_url``: the database pg_restore restores into (its sessions are probed and, on a
    stall, ended); ``None`` when no restore runs (``backups verify``'s archive read).

    The probe's own session on the target is opened when the bound starts, before pg_restore
    (or anything else of the restore) takes a connection slot, and kept to the end: a server
    whose slots are all taken later cannot blind it. If that session is lost and no new one
    can be opened, the probe says so (:attr:`notes`) and does not count its blindness as a
    stall: a pg_restore that waits on the server is then left to finish; one that is stopped
    (``T`` in ``/proc``), or that waits for input the download does not bring, still is one.
    """

    def __init__(self, timeout: float, what: str, target_url: str | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self.target_url = target_url
        self.application_name = f"safemig-restore-{os.urandom(6).hex()}"
        self.consequence = "nothing was restored"
        self.notes: list[str] = []  # what the user should know although the restore went on (a blind probe)
        self._children: list[ChildProcess] = []
        self._sessions: list[Any] = []  # step connections (roles, tablespaces): their statement is cancelled on a stall
        self._watchdog = Watchdog(timeout, self._stop)
        self._io: dict[int, int] = {}
        self._monitor: Any = None  # the probe's session on the target, opened when the bound starts
        self._monitor_tried = threading.Event()
        self._blind: str | None = None  # why the probe cannot look at the target now (None: it can)
        self._evidence = ""  # what the probe saw when the stall was called
        self._said: tuple[str, str] | None = None  # (what, consequence) when the stall was called
        self._cancelled = 0  # step statements cancelled by the stall
        self._waits: dict[int, str] = {}  # a step's backend pid -> the lock it waited for when cancelled
        self._probing = threading.Event()
        self._done = threading.Event()
        self._began = time.monotonic()
        self.timeline: dict[str, float] = {}  # phase -> seconds since the bound was made (bench, --json)

    def mark(self, phase: str) -> None:
        self.timeline.setdefault(phase, round(time.monotonic() - self._began, 3))

    def __enter__(self) -> RestoreBound:
        self._watchdog.__enter__()
        self._prober = threading.Thread(target=self._probe_loop, name="restore-probe", daemon=True)
        self._prober.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._watchdog.__exit__()
        # its connection to the target closes before the caller goes on (a DROP DATABASE without
        # FORCE right after a restore must not see it); bounded, in case that server froze
        self._prober.join(timeout=2.0)

    @property
    def tick(self) -> float:
        return self._watchdog.tick

    @property
    def stalled(self) -> bool:
        return self._watchdog.stalled.is_set()

    def beat(self) -> None:
        self._watchdog.beat()

    def watch(self, child: ChildProcess, consequence: str) -> None:
        """``child`` (pg_restore) is stopped on a stall; ``consequence`` is what the error then says."""
        # the probe's session comes first: pg_restore may take the target's last free slot
        self._monitor_tried.wait(timeout=min(5.0, self.timeout))
        self._children.append(child)
        self.consequence = consequence
        self._probing.set()

    def unwatch(self, child: ChildProcess, consequence: str = "nothing was restored") -> None:
        if child in self._children:
            self._children.remove(child)
        self.consequence = consequence
        if not self._children:
            self._probing.clear()

    @contextmanager
    def watching(
        self, what: str, consequence: str = "nothing was restored"
    ) -> Iterator[Callable[[ChildProcess], None]]:
        """While the block runs, the children handed to the yielded callable are stopped on a stall,
        and the error says the stall was on ``what`` (e.g. the TOC read: ``pg_restore --list``)."""
        before = self.what
        started: list[ChildProcess] = []

        def watch(child: ChildProcess) -> None:
            started.append(child)
            self.watch(child, consequence)

        self.what = what
        try:
            yield watch
        finally:
            for child in started:
                self.unwatch(child, consequence)
            self.what = before

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` in a daemon thread (a frozen server cannot pin the process); see :meth:`result`."""
        pool = DaemonPool(1, "restore-step")
        future = pool.submit(fn)
        pool.shutdown()
        return future

    def result(self, future: Future[T]) -> T:
        """``future``'s result, waited for in ticks that a stall interrupts."""
        return self._watchdog.wait(future, self.check)

    def step(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (roles, tablespaces: sessions from :meth:`session`) under the bound.

        On a stall its statement is cancelled (see :meth:`_stop`); the step is then given a
        moment to end, so that its own error (naming what it waited for) is the one raised and
        what it did is known: it either undid its work or returned it, for the caller to undo
        (the next step, or the restore's next wait, raises the stall).
        """
        self.check()
        future = self.submit(fn)
        try:
            return self.result(future)
        except RestoreStalled:
            if not self._cancelled:
                raise  # nothing of the step's was running on the server (an S3 request, say)
            try:
                return future.result(timeout=min(10.0, self.timeout))
            except TimeoutError:
                raise self.error() from None

    @contextmanager
    def session(self, url: str, *, autocommit: bool = True, purpose: str = "safemig restore") -> Iterator[Any]:
        """A connection to ``url`` whose waits end at the bound: ``lock_timeout`` is ``stall_timeout``
        (``statement_timeout`` twice that), and a stall cancels its statement.

        For the steps around pg_restore that run SQL of their own (creating or dropping roles
        and tablespaces, the checks before): a lock another session holds on ``pg_authid`` or
        ``pg_tablespace`` must not hang the restore. ``client_connection_check_interval`` makes
        the server end the statement if this process is gone (PostgreSQL 14+).
        """
        yield from _bounded_session(url, self.timeout, autocommit, purpose, self._sessions)

    def step_error(self, exc: BaseException, doing: str, consequence: str) -> RestoreStalled | None:
        """The stall ``exc`` (from a :meth:`session`) stands for, or ``None`` if it is another failure."""
        why = stall_reason(exc)
        if why is None:
            return None
        if self._waits and "due to user request" in why:  # cancelled by the stall while it waited for a lock
            why = next(iter(self._waits.values()))
        return RestoreStalled(
            f"no progress for {format_duration(self.timeout)} on {doing} (backup.stall_timeout): {why}: {consequence}",
            hint="find the session holding the lock (pg_locks, pg_stat_activity) and end it, then retry;"
            " raise backup.stall_timeout if such waits are expected",
        )

    def check(self) -> None:
        """Raise :class:`RestoreStalled` once the watchdog fired."""
        if self.stalled:
            raise self.error()

    def error(self) -> RestoreStalled:
        seen = f" ({self._evidence})" if self._evidence else ""
        what, consequence = self._said or (self.what, self.consequence)
        return RestoreStalled(
            f"no progress for {format_duration(self.timeout)} on {what}{seen} (backup.stall_timeout): {consequence}",
            hint="check S3's reachability and the target server (a lock held by another session stops pg_restore);"
            " raise backup.stall_timeout for a slow link",
        )

    def _stop(self) -> None:
        """The stall: pg_restore and its workers go, then their sessions on the server (bounded);
        a step's statement (roles, tablespaces) is cancelled."""
        self._said = (self.what, self.consequence)  # what the error says, whatever is unwatched after
        if not self._evidence:
            stopped = self._stopped()
            if stopped:
                self._evidence = f"pg_restore (pid {stopped}) is stopped"
        for child in list(self._children):
            kill_tree(child)
        if self._sessions:
            run_bounded(self._note_waits, min(5.0, self.timeout))
        for conn in list(self._sessions):
            self._cancelled += 1
            run_bounded(conn.cancel_safe, min(10.0, self.timeout))
        if self.target_url and self._children:
            run_bounded(self._terminate_sessions, min(10.0, self.timeout))

    def _note_waits(self) -> None:
        """Before a step's statement is cancelled: which session's lock it waits for, if any (the error says)."""
        import psycopg

        if self._monitor is None:
            return
        try:
            pids = [conn.info.backend_pid for conn in list(self._sessions)]
            for pid, blocker, state, app in self._monitor.execute(_BLOCKERS, (pids,)).fetchall():
                by = f"session {blocker} ({state}" + (f", application_name {app!r})" if app else ")")
                self._waits[pid] = f"waited that long for a lock held by {by}"
        except psycopg.Error:
            pass  # the error then says the statement was cancelled, without the lock

    def _terminate_sessions(self) -> None:
        """A killed pg_restore's session may still run a statement (an index build) until it next
        writes to the client: end it, so its transaction is rolled back now. Through the probe's
        session where it has one (no free slot is needed), else a new one."""
        import psycopg

        from safemig.db import connect

        try:
            if self._monitor is not None:
                try:
                    self._monitor.execute(_TERMINATE, (self.application_name,))
                    return
                except psycopg.Error:
                    pass
            url = self.target_url or ""
            with connect(url, autocommit=True, application_name="safemig restore", connect_timeout=5) as conn:
                conn.execute(_TERMINATE, (self.application_name,))
        except (psycopg.Error, SafemigError):
            pass  # best effort: the session also ends once it notices its client is gone

    def _probe_loop(self) -> None:
        if self.target_url:
            self._connect_monitor(min(10.0, self.timeout))  # before pg_restore takes a slot
        self._monitor_tried.set()
        while not self._done.wait(self.tick):
            if not self._probing.is_set():
                continue
            moved = self._probe()
            if moved or (moved is None and self._blind_but_waiting_on_the_server()):
                self._evidence = ""  # a process stopped and continued is no longer evidence
                self.beat()
        if self._monitor is not None:
            try:
                self._monitor.close()
            except Exception:  # noqa: BLE001 - closing a connection at the end; nothing to report
                pass

    def _probe(self) -> bool | None:
        """Did pg_restore move since the last tick: bytes read or written by it or its workers
        (``/proc/PID/io``), or one of its sessions working on the server (not waiting for a lock
        or for pg_restore)? ``None``: the probe could not look at the server."""
        moved = False
        for child in list(self._children):
            for pid in _tree(child.proc.pid):
                total = _io_bytes(pid)
                if total is not None and total != self._io.get(pid):
                    self._io[pid] = total
                    moved = True
        if moved or not self.target_url:
            return moved
        return self._sessions_working()

    def _blind_but_waiting_on_the_server(self) -> bool:
        """The probe cannot see the server: count that as progress only while pg_restore waits on
        the server (not stopped, and not waiting for input from us, whose silence is the download's)."""
        stopped = self._stopped()
        if stopped:
            self._evidence = f"pg_restore (pid {stopped}) is stopped; the progress probe has no session on the target"
            return False
        if any(_waits_for_input(child) for child in list(self._children)):
            return False
        if not any("could not look" in note for note in self.notes):
            self.notes.append(
                f"the stall bound could not look at pg_restore's sessions on the target ({self._blind});"
                " while pg_restore waited on the server it was not stopped for lack of progress"
            )
        return True

    def _stopped(self) -> int | None:
        """The pid of a watched process (pg_restore, a -j worker) that is stopped (SIGSTOP, a debugger)."""
        for child in list(self._children):
            for pid in _tree(child.proc.pid):
                if _state(pid) in ("T", "t"):
                    return pid
        return None

    def _connect_monitor(self, connect_timeout: float) -> bool:
        import psycopg

        from safemig.db import connect, error_text

        try:
            conn = connect(
                self.target_url or "",
                autocommit=True,
                application_name="safemig restore (progress)",
                connect_timeout=connect_timeout,
            )
        except (psycopg.Error, SafemigError) as exc:
            self._blind = getattr(exc, "message", None) or error_text(exc)
            return False
        try:
            # a server-wide idle_session_timeout must not end it between ticks; no probe waits long
            conn.execute(_MONITOR_SETTINGS, (f"{min(int(max(1.0, self.timeout) * 1000), _PG_MAX_MS)}ms",))
        except psycopg.Error:
            pass  # an older server without idle_session_timeout: the probe still works
        self._monitor, self._blind = conn, None
        return True

    def _sessions_working(self) -> bool | None:
        import psycopg

        from safemig.db import error_text

        if self._monitor is None and not self._connect_monitor(2.0):
            return None
        try:
            row = self._monitor.execute(_SESSIONS, (self.application_name,)).fetchone()
            return bool(row and row[0])
        except psycopg.Error as exc:
            self._blind = f"its session was lost: {error_text(exc)}"
            try:
                self._monitor.close()
            except Exception:  # noqa: BLE001 - a broken connection; the probe goes on without it
                pass
            self._monitor = None
            return None


def stall_reason(exc: BaseException) -> str | None:
    """Why a statement of a bounded session (:meth:`RestoreBound.session`) ended, if it was the bound."""
    import psycopg

    from safemig.db import error_text

    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return f"waited that long for a lock another session holds ({error_text(exc)})"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return f"a statement did not finish ({error_text(exc)})"
    return None


def _bounded_session(
    url: str, timeout: float, autocommit: bool, purpose: str, registry: list[Any] | None = None
) -> Iterator[Any]:
    from safemig.db import connect

    conn = connect(url, autocommit=autocommit, application_name=purpose, connect_timeout=min(10.0, timeout))
    try:
        import psycopg

        # a lock waited for that long is the stall; a statement running twice as long (not waiting) a backstop
        limit = int(max(1.0, timeout) * 1000)
        conn.execute(_STEP_SETTINGS, (f"{min(limit, _PG_MAX_MS)}ms", f"{min(2 * limit, _PG_MAX_MS)}ms"))
        if not autocommit:
            conn.commit()  # set_config in a transaction would be undone by a later rollback
        try:
            conn.execute(_CLIENT_CHECK)
        except psycopg.Error:  # a server on a platform without POLLRDHUP (macOS) refuses it
            if not autocommit:
                conn.rollback()
        else:
            if not autocommit:
                conn.commit()
        if registry is not None:
            registry.append(conn)
        yield conn
    finally:
        if registry is not None and conn in registry:
            registry.remove(conn)
        conn.close()


@contextmanager
def bounded_session(
    url: str, timeout: float, *, autocommit: bool = True, purpose: str = "safemig restore"
) -> Iterator[Any]:
    """:meth:`RestoreBound.session` without a bound: for undoing a step after the bound fired."""
    yield from _bounded_session(url, timeout, autocommit, purpose)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _waits_for_input(child: ChildProcess) -> bool:
    """Has ``child`` read all we wrote into its stdin (so it waits for more, or works on what it has)?"""
    if child.stdin_socket is not None:  # a streamed restore feeds pg_restore through a socket, not a pipe
        return child.stdin_socket.unread() == 0
    stdin = child.proc.stdin
    if stdin is None or stdin.closed:
        return False
    return queued_bytes(stdin.fileno(), termios.FIONREAD) == 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (pg_restore -j forks its workers), from /proc."""
    found = [pid]
    for parent in found:
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(c) for c in children if c.isdigit()]
    return found


def _io_bytes(pid: int) -> int | None:
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines() if ":" in line)
        return int(fields["rchar"]) + int(fields["wchar"])
    except (OSError, KeyError, ValueError):
        return None


def kill_tree(child: ChildProcess) -> None:
    """SIGKILL ``child`` and its descendants (pg_restore -j's workers), then reap it."""
    for pid in reversed(_tree(child.proc.pid)[1:]):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    child.kill()


class Download:
    """One ``GetObject``, read ahead by a daemon thread; iterate for the chunks (1 MiB).

    :meth:`headers` is the response without its body (size, ETag, version, metadata). S3
    failures become :class:`~safemig.errors.StorageError`; once ``bound`` stalled, waiting
    raises :class:`RestoreStalled`. Every chunk received counts as progress.
    """

    def __init__(self, client: Any, bucket: str, key: str, action: str, bound: RestoreBound) -> None:
        self.bucket, self.key, self.action = bucket, key, action
        self._bound = bound
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_AHEAD)
        self._closed = threading.Event()
        self._headers: dict[str, Any] | None = None
        self._ended = False
        threading.Thread(target=self._read, args=(client,), name="s3-get", daemon=True).start()

    def _read(self, client: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = None
        try:
            got = client.get_object(Bucket=self.bucket, Key=self.key)
            body = got["Body"]
            self._bound.beat()
            self._put({k: v for k, v in got.items() if k != "Body"})
            while not self._closed.is_set():
                chunk = body.read(CHUNK)
                self._bound.beat()
                if not chunk:
                    self._put(_END)
                    return
                self._put(chunk)
        except (ClientError, BotoCoreError, OSError) as exc:  # a cut connection, a read timeout, a 404
            self._put(storage_error(exc, self.action, self.bucket, self.key))
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self._put(exc)
        finally:
            if body is not None:
                try:
                    body.close()
                except Exception:  # noqa: BLE001 - closing an abandoned response
                    pass

    def _put(self, item: Any) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _take(self) -> Any:
        while True:
            self._bound.check()
            try:
                item = self._queue.get(timeout=self._bound.tick)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            return item

    def headers(self) -> dict[str, Any]:
        if self._headers is None:
            self._headers = self._take()
        return self._headers

    def __iter__(self) -> Iterator[bytes]:
        self.headers()
        while not self._ended:
            item = self._take()
            if item is _END:
                self._ended = True
                return
            yield item

    def close(self) -> None:
        """Stop reading (the thread ends after its current read; a frozen one is abandoned)."""
        self._closed.set()
