"""sqlx's migration lock held for a whole deploy, and who holds it when it cannot be had.

Used by preflight (prod) and by the standing-staging rehearsal (staging): the lock is a
session advisory lock, re-entrant only on its own session, so holding it on the
connection that migrates keeps every other safemig, ``sqlx migrate run`` and application
start-up from migrating the same database meanwhile.
"""

from __future__ import annotations

from contextlib import ExitStack

from safemig.deploy.gates import GateContext
from safemig.errors import CheckFailed, DatabaseError

_HOLDER_SQL = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), a.usename, a.client_addr::text,
       now() - a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s AND a.pid <> pg_backend_pid()
"""


def lock_holder(conn, key: int) -> str:
    """Who holds sqlx's migration lock on this database: ``pid 123 (safemig deploy, user app from 10.0.0.5)``."""
    try:
        row = conn.execute(_HOLDER_SQL, (key,)).fetchone()
    except Exception:
        return "another session"
    if row is None:
        return "another session"
    pid, app, user, addr, age = row
    where = f" from {addr}" if addr else ""
    return f"pid {pid} ({app}, user {user}{where}, connected {str(age).split('.')[0]} ago)"


def take_deploy_lock(stack: ExitStack, conn, env: str, wait_s: float, gate: GateContext) -> None:
    """Hold sqlx's migration lock on ``conn`` until the deploy ends; refuse (exit 1) if another holds it.

    ``wait_s`` > 0 waits that long for it first (via the session's ``lock_timeout``, which
    ``pg_advisory_lock`` honours); 0 refuses at once.
    """
    from safemig import db

    (name,) = conn.execute("SELECT current_database()").fetchone()
    key = db.lock_id(name)
    waited = False

    def on_wait() -> None:
        nonlocal waited
        holder = lock_holder(conn, key)
        if wait_s <= 0:
            raise CheckFailed(
                f"{env} is being migrated by another session: the migration lock is held by {holder}",
                hint=(
                    "wait until it finishes (a second deploy then finds nothing to deploy), or pass "
                    "--lock-wait SECONDS to wait"
                ),
            )
        waited = True
        gate.note(f"waiting up to {wait_s:g}s for the migration lock on {env}, held by {holder}")
        db.set_timeouts(conn, f"{int(wait_s * 1000)}ms", None)

    try:
        stack.enter_context(db.advisory_lock(conn, on_wait=on_wait))
    except DatabaseError as exc:
        if waited and "lock timeout" in exc.message:
            raise CheckFailed(
                f"{env} is still being migrated by another session after waiting {wait_s:g}s for the migration lock",
                hint="try again later; `safemig migrate info --env " + env + "` shows the ledger",
            ) from None
        raise
    gate.note(f"migration lock taken on {env} (held until the deploy ends)")
