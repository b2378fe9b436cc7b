"""The runbook's lock predictions (deploy/expectations.py) checked against what a real server takes.

Each statement runs on a fresh schema; ``pg_locks`` of its backend is read while it still
holds its locks: inside its transaction for most, and for the ``CONCURRENTLY`` ones (which
refuse a transaction) while they wait for an older snapshot held by another session.
Every predicted relation must be locked in exactly the predicted mode, and every
pre-existing table the statement locks more strongly than ROW EXCLUSIVE must be predicted.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from safemig.deploy.expectations import expected_locks
from safemig.migrations.blockers import pg_lock_name

SCHEMA = """
CREATE TABLE other (id int PRIMARY KEY);
CREATE TABLE old (id int PRIMARY KEY, a int, b int);
CREATE INDEX idx ON old (a);
CREATE INDEX idx2 ON old (b);
ALTER TABLE old ADD CONSTRAINT c CHECK (a > 0) NOT VALID;
CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER tr BEFORE INSERT ON old FOR EACH ROW EXECUTE FUNCTION trg();
CREATE MATERIALIZED VIEW mv AS SELECT id FROM old;
CREATE UNIQUE INDEX mv_id ON mv (id);
CREATE TABLE parted (id int) PARTITION BY RANGE (id);
CREATE TABLE part1 (id int);
"""

# (statement, tables it locks above ROW EXCLUSIVE that the prediction names only in its note)
IN_TRANSACTION = [
    ("ALTER TABLE old ADD COLUMN x int", ()),
    ("ALTER TABLE old ALTER COLUMN a SET NOT NULL", ()),
    ("ALTER TABLE old VALIDATE CONSTRAINT c", ()),
    ("ALTER TABLE old ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES other (id) NOT VALID", ()),
    ("ALTER TABLE old ADD COLUMN o int REFERENCES other (id)", ()),
    ("ALTER TABLE old ALTER COLUMN a SET (n_distinct = 100)", ()),
    ("ALTER TABLE old ALTER COLUMN a SET STATISTICS 500", ()),
    ("ALTER TABLE old SET (fillfactor = 90)", ()),
    ("ALTER TABLE old ENABLE TRIGGER tr", ()),
    ("ALTER TABLE old DISABLE TRIGGER tr", ()),
    ("ALTER TABLE old DISABLE TRIGGER ALL", ()),
    ("ALTER TABLE old ENABLE TRIGGER USER", ()),
    ("ALTER TABLE parted ATTACH PARTITION part1 FOR VALUES FROM (0) TO (10)", ()),
    ("ALTER TABLE old RENAME TO old_renamed", ()),
    ("ALTER TABLE old RENAME COLUMN b TO b2", ()),
    ("ALTER INDEX idx RENAME TO idx_renamed", ()),
    ("CREATE INDEX idx3 ON old (a, b)", ()),
    ("CREATE TRIGGER tr2 AFTER UPDATE ON old FOR EACH ROW EXECUTE FUNCTION trg()", ()),
    ("CREATE RULE r AS ON INSERT TO old DO INSTEAD NOTHING", ()),
    ("CREATE POLICY p ON old USING (true)", ()),
    ("CREATE STATISTICS st (dependencies) ON a, b FROM old", ()),
    ("CREATE TABLE child (id int REFERENCES other (id))", ()),
    ("COMMENT ON TABLE old IS 'x'", ()),
    ("COMMENT ON COLUMN old.a IS 'x'", ()),
    ("COMMENT ON INDEX idx IS 'x'", ()),
    ("REINDEX TABLE old", ()),
    ("REINDEX INDEX idx", ("old",)),
    ("DROP INDEX idx", ("old",)),
    ("DROP TRIGGER tr ON old", ()),
    ("DROP TABLE part1", ()),
    ("TRUNCATE old", ()),
    ("LOCK TABLE old IN SHARE MODE", ()),
    ("UPDATE old SET a = 1 WHERE id = 1", ()),
    ("ANALYZE old", ()),
    ("CLUSTER old USING old_pkey", ()),
    ("REFRESH MATERIALIZED VIEW mv", ()),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", ()),
    ("DO $$ BEGIN ALTER TABLE old ADD COLUMN y int; CREATE INDEX idx5 ON other (id); END $$", ()),
]
CONCURRENTLY = [
    ("CREATE INDEX CONCURRENTLY idx4 ON old (b)", ()),
    ("REINDEX INDEX CONCURRENTLY idx", ("old",)),
    ("REINDEX TABLE CONCURRENTLY old", ()),
    ("DROP INDEX CONCURRENTLY idx2", ("old",)),
]

_LOCKS = """
SELECT l.relation, c.relkind::text, l.mode FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = %s AND l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (c.oid IS NULL OR c.relnamespace = 'public'::regnamespace)
"""
_ORDER = ["AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
          "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"]


@pytest.fixture
def db(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        yield conn


def _oids(conn, names) -> dict[str, int]:
    return {name: conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()[0] for name in names}


def _strongest(rows) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    for oid, kind, mode in rows:
        if oid not in out or _ORDER.index(mode) > _ORDER.index(out[oid][1]):
            out[oid] = (kind, mode)
    return out


def _check(statement, conn, existing: set[int], actual: dict[int, tuple[str, str]], unlisted=()) -> None:
    predicted = [e for e in expected_locks(statement) if not e.table.startswith("(")]
    assert predicted, f"no prediction for {statement}"
    oids = _oids(conn, {e.table for e in predicted} | set(unlisted))
    for e in predicted:
        oid = oids[e.table]
        assert oid in actual, f"{statement}: predicted {e.mode} on {e.table}, but it took no lock on it"
        assert actual[oid][1] == pg_lock_name(e.mode), f"{statement}: {e.table} predicted {e.mode}, took {actual[oid][1]}"
    named = {oids[e.table] for e in predicted} | {oids[t] for t in unlisted}
    for oid, (kind, mode) in actual.items():
        if oid in existing and kind in ("r", "p", "m", None) and _ORDER.index(mode) > _ORDER.index("RowExclusiveLock"):
            assert oid in named, f"{statement}: took {mode} on table oid {oid}, which the prediction does not name"


def _existing(conn) -> set[int]:
    return {oid for (oid,) in conn.execute("SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace")}


def _names_before(conn, statement, unlisted) -> _Names:
    """Names resolved before the statement runs (a renamed or dropped relation has no name after)."""
    names = {e.table for e in expected_locks(statement) if not e.table.startswith("(")} | set(unlisted)
    return _Names(conn, _oids(conn, names))


@pytest.mark.parametrize(("statement", "unlisted"), IN_TRANSACTION, ids=[s for s, _ in IN_TRANSACTION])
def test_prediction_matches_the_locks_taken_in_a_transaction(db, statement, unlisted):
    existing = _existing(db)
    names = _names_before(db, statement, unlisted)
    with db.transaction(force_rollback=True):
        db.execute(statement)
        actual = _strongest(db.execute(_LOCKS, (db.info.backend_pid,)).fetchall())
        _check(statement, names, existing, actual, unlisted)


@pytest.mark.parametrize(("statement", "unlisted"), CONCURRENTLY, ids=[s for s, _ in CONCURRENTLY])
def test_prediction_matches_the_locks_a_concurrent_statement_holds_while_it_waits(db, database_url, statement, unlisted):
    existing = _existing(db)
    names = _names_before(db, statement, unlisted)
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url, autocommit=True) as runner:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM old")  # an older snapshot, and ACCESS SHARE on old
        pid = runner.info.backend_pid
        errors: list[BaseException] = []

        def run() -> None:
            try:
                runner.execute(statement)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            for _ in range(200):
                waiting = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                if waiting and waiting[0] == "Lock":
                    break
                time.sleep(0.02)
            else:
                pytest.fail(f"{statement} never waited for the older snapshot")
            actual = _strongest(db.execute(_LOCKS, (pid,)).fetchall())
        finally:
            holder.rollback()
            thread.join(20)
        assert not errors, errors
        _check(statement, names, existing, actual, unlisted)


def test_a_do_block_with_dynamic_sql_says_what_it_cannot_know():
    (known, unknown) = expected_locks(
        "DO $$ BEGIN ALTER TABLE t ADD COLUMN x int; EXECUTE format('DROP TABLE %I', 'x'); END $$;\n"
    )
    assert (known.table, known.mode, known.line) == ("t", "ACCESS EXCLUSIVE", 1)
    assert unknown.mode == "unknown" and "EXECUTE" in unknown.note


def test_tables_created_earlier_in_the_deploy_block_nobody():
    created: set[str] = set()
    expected_locks("CREATE TABLE fresh (id int);\n", created)
    (alter,) = expected_locks("ALTER TABLE fresh ADD COLUMN x int;\n", created)
    assert alter.new_table and alter.blocks.startswith("nobody")


class _Names:
    """``conn`` for :func:`_check`, resolving names to the oids they had before the statement."""

    def __init__(self, conn, oids: dict[str, int]) -> None:
        self.conn, self.oids = conn, oids

    def execute(self, sql, params):
        (name,) = params
        oid = self.oids.get(name)
        return _Row(oid) if oid is not None else self.conn.execute(sql, params)


class _Row:
    def __init__(self, value) -> None:
        self.value = value

    def fetchone(self):
        return (self.value,)
