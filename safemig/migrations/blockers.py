"""Who blocks a migration's lock: the sessions named when a statement waits or hits ``lock_timeout``.

A statement that needs a strong lock (``ALTER TABLE`` takes ACCESS EXCLUSIVE) waits for
every session holding a conflicting lock on the table, and while it waits every later
reader and writer of the table queues behind it. When ``lock_timeout`` cancels it
(SQLSTATE 55P03) the wait is over and ``pg_blocking_pids`` of the migrating backend is
empty again, so the sessions to blame must be read *while* it waits, and from a second
connection: the migrating one is busy waiting (and afterwards in an aborted transaction).

:class:`LockWatch` is that second connection. The engine arms it around each statement;
a background thread looks only when the statement has been running for a while
(``first_look_s``, at most a quarter of ``lock_timeout``; quick statements cost two lock
acquisitions and no query at all), then as often again reads ``pg_blocking_pids`` joined
with ``pg_stat_activity``: one cheap query, and the connection is opened on first use.
:meth:`LockWatch.holders` answers the question before a statement runs: which sessions hold a lock on a relation that
conflicts with the mode the statement will ask for (PostgreSQL's conflict table).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safemig.redact import redact

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

# PostgreSQL manual, "Explicit Locking", table "Conflicting Lock Modes": mode -> the modes it conflicts with.
_AS, _RS, _RE, _SUE, _S, _SRE, _E, _AE = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
CONFLICTS: dict[str, frozenset[str]] = {
    _AS: frozenset({_AE}),
    _RS: frozenset({_E, _AE}),
    _RE: frozenset({_S, _SRE, _E, _AE}),
    _SUE: frozenset({_SUE, _S, _SRE, _E, _AE}),
    _S: frozenset({_RE, _SUE, _SRE, _E, _AE}),
    _SRE: frozenset({_RE, _SUE, _S, _SRE, _E, _AE}),
    _E: frozenset({_RS, _RE, _SUE, _S, _SRE, _E, _AE}),
    _AE: frozenset({_AS, _RS, _RE, _SUE, _S, _SRE, _E, _AE}),
}


def pg_lock_name(mode: str) -> str:
    """``SHARE UPDATE EXCLUSIVE`` -> ``ShareUpdateExclusiveLock`` (how ``pg_locks.mode`` spells it)."""
    return "".join(word.capitalize() for word in mode.split()) + "Lock"


@dataclass(frozen=True)
class Blocker:
    """A session that holds (or waits ahead for) a lock a migration statement needs."""

    pid: int
    application_name: str
    user: str | None
    client: str | None  # address:port; None for a Unix-socket connection
    state: str | None  # pg_stat_activity.state: active, idle in transaction, ...
    transaction_age_s: float | None  # since its transaction began; None outside a transaction
    query: str  # first line of its current (or last) query, redacted and clipped
    locks: str = ""  # what it holds on the contested relation: "AccessShareLock on public.items"

    def describe(self) -> str:
        """``pid 4242 (blocker-app, user app from 10.0.0.5:51234, idle in transaction for 12.3s): SELECT ...``."""
        parts = [self.application_name or "no application_name"]
        who = f"user {self.user}" if self.user else ""
        if self.client:
            who += f" from {self.client}" if who else f"from {self.client}"
        if who:
            parts.append(who)
        state = self.state or "state unknown"
        if self.transaction_age_s is not None:
            state += f", transaction open {self.transaction_age_s:.1f}s"
        parts.append(state)
        if self.locks:
            parts.append(f"holds {self.locks}")
        return f"pid {self.pid} ({', '.join(parts)})" + (f": {self.query}" if self.query else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "application_name": self.application_name,
            "user": self.user,
            "client": self.client,
            "state": self.state,
            "transaction_age_s": None if self.transaction_age_s is None else round(self.transaction_age_s, 3),
            "query": self.query,
            "locks": self.locks,
        }


def describe_all(blockers: list[Blocker] | tuple[Blocker, ...]) -> str:
    """Every blocker on one line, ``; ``-separated."""
    return "; ".join(b.describe() for b in blockers)


def _first_line(query: str | None, width: int = 120) -> str:
    line = next((ln.strip() for ln in (query or "").splitlines() if ln.strip()), "")
    line = redact(line)
    return line if len(line) <= width else line[: width - 1] + "…"


_COLUMNS = """
a.pid, coalesce(a.application_name, ''), a.usename::text,
CASE WHEN a.client_addr IS NULL THEN NULL ELSE host(a.client_addr) || ':' || a.client_port END,
a.state, extract(epoch FROM now() - a.xact_start)::float8, a.query
"""

# Sessions that block backend %(pid)s now, with the locks each holds on the relations it waits for.
_BLOCKING_SQL = f"""
SELECT {_COLUMNS},
       (SELECT string_agg(DISTINCT h.mode || ' on ' || h.relation::regclass::text, ', ')
          FROM pg_locks h
         WHERE h.pid = a.pid AND h.granted AND h.locktype = 'relation'
           AND h.relation IN (SELECT w.relation FROM pg_locks w WHERE w.pid = %(pid)s AND NOT w.granted))
FROM pg_stat_activity a
WHERE a.pid = ANY (pg_blocking_pids(%(pid)s))
ORDER BY a.xact_start NULLS LAST, a.pid
"""

# Sessions other than %(pid)s holding a lock on %(relation)s in one of %(modes)s.
_HOLDERS_SQL = f"""
SELECT {_COLUMNS}, string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass(%(relation)s)
  AND l.mode = ANY (%(modes)s) AND l.pid <> %(pid)s AND a.pid <> pg_backend_pid()
GROUP BY a.pid, a.application_name, a.usename, a.client_addr, a.client_port, a.state, a.xact_start, a.query
ORDER BY a.xact_start NULLS LAST, a.pid
"""


def _blockers(rows) -> list[Blocker]:
    return [
        Blocker(
            pid=pid,
            application_name=app,
            user=user,
            client=client,
            state=state,
            transaction_age_s=max(age, 0.0) if age is not None else None,
            query=_first_line(query),
            locks=locks or "",
        )
        for pid, app, user, client, state, age, query, locks in rows
    ]


class LockWatch:
    """A second connection to the migrating database that names the sessions a statement waits for.

    Use as a context manager (it closes its connection and thread). :meth:`start` arms it
    for backend ``pid`` before a statement, :meth:`stop` disarms it and returns the
    sessions seen blocking that statement while it ran (empty when it never waited). It
    never raises into the migration: a failure is kept in :attr:`error`.
    """

    def __init__(
        self,
        url: str,
        *,
        first_look_s: float = 0.05,
        application_name: str = "safemig lock watch",
    ) -> None:
        self.url = url
        self.first_look_s = first_look_s
        self.application_name = application_name
        self.error: str | None = None
        self._conn: psycopg.Connection | None = None
        self._conn_lock = threading.Lock()  # the thread and holders() share one connection
        self._state = threading.Lock()  # guards the arming below; held only for a few assignments
        self._generation = 0
        self._pid: int | None = None
        self._armed_at = 0.0
        self._tick = first_look_s
        self._seen: dict[int, Blocker] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- arming around a statement ---------------------------------------------------------
    def start(self, pid: int, lock_timeout_s: float = 0.0) -> None:
        """Watch backend ``pid`` until :meth:`stop`; with a short ``lock_timeout_s`` the looks come sooner.

        Costs a lock and a few assignments: the thread is not woken (it ticks on its own), so a
        statement quicker than the first look never causes a query.
        """
        with self._state:
            if self._closed.is_set():
                return
            self._generation += 1
            self._pid = pid
            self._armed_at = time.monotonic()
            self._seen = {}
            self._tick = min(self.first_look_s, lock_timeout_s / 4) if lock_timeout_s > 0 else self.first_look_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="safemig-lock-watch", daemon=True)
                self._thread.start()

    def stop(self) -> list[Blocker]:
        """Stop watching; the sessions seen blocking the statement, oldest transaction first."""
        with self._state:
            self._generation += 1
            self._pid = None
            seen, self._seen = list(self._seen.values()), {}
        return seen

    def _run(self) -> None:
        # Ticks every first look (at most 50 ms) while the watch lives: negligible, and it keeps
        # start()/stop() free of thread wake-ups, which would cost every statement.
        while not self._closed.wait(self._tick):
            with self._state:
                generation, pid, since = self._generation, self._pid, self._armed_at
            if pid is None or time.monotonic() - since < self._tick:
                continue
            found = self._query(_BLOCKING_SQL, {"pid": pid})
            with self._state:
                if self._generation == generation:
                    for blocker in found:
                        self._seen.setdefault(blocker.pid, blocker)

    # -- before a statement -----------------------------------------------------------------
    def holders(self, relation: str, mode: str, *, pid: int) -> list[Blocker]:
        """Sessions (other than ``pid``) holding a lock on ``relation`` that conflicts with ``mode`` (SQL spelling).

        Empty when the relation does not exist (yet) or the mode is unknown.
        """
        conflicting = CONFLICTS.get(mode)
        if not conflicting:
            return []
        modes = sorted(pg_lock_name(m) for m in conflicting)
        return self._query(_HOLDERS_SQL, {"relation": relation, "modes": modes, "pid": pid})

    # -- the connection ---------------------------------------------------------------------
    def _query(self, sql: str, params: dict[str, Any]) -> list[Blocker]:
        import psycopg

        from safemig.db import error_text

        with self._conn_lock:
            if self._closed.is_set() or self.error is not None:
                return []
            try:
                if self._conn is None:
                    self._conn = psycopg.connect(
                        self.url, autocommit=True, application_name=self.application_name, connect_timeout=5
                    )
                return _blockers(self._conn.execute(sql, params, prepare=False).fetchall())
            except psycopg.Error as exc:  # never break the migration being watched
                self.error = error_text(exc)
                return []

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._conn_lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # pragma: no cover - already gone
                    pass
                self._conn = None
