"""Lock recording on a real server: in-transaction from pg_locks, -- no-transaction by sampling."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from safemig.deploy.locks import LockRecorder, sql_mode, strongest_per_relation
from safemig.migrations.engine import Migrator
from safemig.migrations.files import discover

# On every PostgreSQL major CI tests (docs/postgres-majors.md).
pytestmark = pytest.mark.compat


def _migrations(tmp_path: Path, files: dict[str, str]):
    directory = tmp_path / "m"
    directory.mkdir()
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return discover(directory)


def test_each_statement_gets_the_locks_it_added_in_its_transaction(tmp_path, database_url):
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE accounts (id int PRIMARY KEY, name text)")
        setup.execute("INSERT INTO accounts SELECT g, 'n' FROM generate_series(1, 50) g")
        setup.execute("ANALYZE accounts")
    (m,) = _migrations(tmp_path, {"001_x.sql": (
        "UPDATE accounts SET name = 'x' WHERE id < 10;\n"
        "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS note text;\n"
        "CREATE TABLE IF NOT EXISTS audit (id int);\n"
    )})
    with psycopg.connect(database_url, autocommit=True) as conn:
        recorder = LockRecorder(conn.info.backend_pid, database_url)
        Migrator(conn, [m], rollbacks_dir=tmp_path, observer=recorder).apply(m)
        recorder.close()
    update, alter, create = recorder.statements
    assert [(lk.relation, sql_mode(lk.mode)) for lk in update.locks if lk.relation == "public.accounts"] == [("public.accounts", "ROW EXCLUSIVE")]
    assert update.rowcount == 9
    # the ALTER adds ACCESS EXCLUSIVE; the ROW EXCLUSIVE taken before is not repeated
    assert ("public.accounts", "ACCESS EXCLUSIVE") in [(lk.relation, sql_mode(lk.mode)) for lk in alter.locks]
    assert all(not (lk.relation == "public.accounts" and lk.mode == "RowExclusiveLock") for lk in alter.locks)
    assert any(lk.relation == "public.audit" for lk in create.locks)
    assert next(lk for lk in alter.locks if lk.relation == "public.accounts").rows == 50
    assert all(not lk.relation.startswith("pg_catalog.") for st in recorder.statements for lk in st.locks)
    rollup = strongest_per_relation(recorder.statements)
    accounts = next(r for r in rollup if r["relation"] == "public.accounts")
    assert accounts["mode"] == "ACCESS EXCLUSIVE" and accounts["first_taken_at_line"] == 2
    # held from the ALTER until the commit: its own and every later statement's time
    assert abs(accounts["held_ms"] - round((alter.duration_s + create.duration_s) * 1000, 2)) < 0.05


def test_no_transaction_statements_are_sampled_from_a_second_connection(tmp_path, database_url):
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE big (id int)")
    (m,) = _migrations(tmp_path, {"001_slow.sql": "-- no-transaction\nSELECT count(*), pg_sleep(0.3) FROM big;\nSELECT 1;\n"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        recorder = LockRecorder(conn.info.backend_pid, database_url)
        Migrator(conn, [m], rollbacks_dir=tmp_path, observer=recorder).apply(m)
        recorder.close()
    slow, quick = recorder.statements
    assert slow.method.startswith("sampled") and not slow.held_until_commit
    assert [(lk.relation, sql_mode(lk.mode)) for lk in slow.locks] == [("public.big", "ACCESS SHARE")]
    assert quick.locks == []


def test_a_statement_quicker_than_the_sampler_gets_its_documented_lock_marked_predicted(tmp_path, database_url):
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE items (id int, name text)")
    (m,) = _migrations(tmp_path, {"001_idx.sql": "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_items_name ON items (name);\n"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        # a sampler that never samples: the statement always "finishes between two samples"
        recorder = LockRecorder(conn.info.backend_pid, database_url)
        recorder._sampler = _NeverSampler()
        Migrator(conn, [m], rollbacks_dir=tmp_path, observer=recorder).apply(m)
    (entry,) = recorder.statements
    assert entry.method.startswith("predicted")
    assert [(lk.relation, sql_mode(lk.mode)) for lk in entry.locks] == [("public.items", "SHARE UPDATE EXCLUSIVE")]


class _NeverSampler:
    error = None

    def start(self) -> None:
        pass

    def stop(self) -> list:
        return []

    def close(self) -> None:
        pass
