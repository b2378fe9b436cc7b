"""Archives one transaction cannot restore (default max_locks_per_transaction): thousands of tables,
20,000 large objects. They restore through the verified local copy, with nothing committed from a
damaged object."""

from __future__ import annotations

import psycopg
import pytest

from safemig.backup import restore_backup, run_backup
from safemig.errors import CheckFailed
from tests.backup.test_restore import corrupt_downloads

pytestmark = pytest.mark.slow

TABLES = 4000  # each with a TOAST table, its index and a primary key: ~16,000 locks in one transaction


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_thousands_of_tables_restore_and_a_damaged_copy_commits_nothing(project, config, database_url, database_url_b, s3, monkeypatch):
    with psycopg.connect(database_url, autocommit=True) as conn:
        for first in range(1, TABLES + 1, 500):  # one transaction could not create them all either
            conn.execute(
                f"DO $$ BEGIN FOR i IN {first}..{min(TABLES, first + 499)} LOOP"
                " EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, note text)', i);"
                " EXECUTE format('INSERT INTO t%s VALUES (1, %L)', i, 'row of table ' || i);"
                " END LOOP; END $$"
            )
        slots = conn.execute(
            "SELECT current_setting('max_locks_per_transaction')::int * current_setting('max_connections')::int"
        ).fetchone()[0]
    assert slots < TABLES * 4  # the default: a single transaction could not hold this restore
    result = run_backup(config, "prod", database_url=database_url)
    assert result.toc_entries > 3 * TABLES

    with monkeypatch.context() as patched:
        corrupt_downloads(patched, at_fraction=0.9)
        with pytest.raises(CheckFailed, match="does not match its recorded checksum"):
            restore_backup(config, "prod", source="latest", target_url=database_url_b)
    assert _count(database_url_b, "SELECT count(*) FROM pg_class WHERE relname LIKE 't%' AND relkind = 'r'") == 0

    restored = restore_backup(config, "prod", source="latest", target_url=database_url_b)
    assert restored.mode == "spool"
    assert _count(database_url_b, "SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]+$'") == TABLES
    assert _count(database_url_b, f"SELECT note = 'row of table {TABLES}' FROM t{TABLES}")


def test_twenty_thousand_large_objects(project, config, database_url, database_url_b, s3):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT lo_from_bytea(0, convert_to('large object ' || i, 'UTF8')) FROM generate_series(1, 20000) AS i")
        digest = conn.execute(
            "SELECT md5(string_agg(convert_from(lo_get(oid), 'UTF8'), ',' ORDER BY oid)) FROM pg_largeobject_metadata"
        ).fetchone()[0]
    run_backup(config, "prod", database_url=database_url)
    restored = restore_backup(config, "prod", source="latest", target_url=database_url_b, jobs=2)
    assert restored.mode == "spool"
    with psycopg.connect(database_url_b) as conn:
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 20000
        again = conn.execute(
            "SELECT md5(string_agg(convert_from(lo_get(oid), 'UTF8'), ',' ORDER BY oid)) FROM pg_largeobject_metadata"
        ).fetchone()[0]
    assert again == digest

    # the target now holds large objects (and nothing else): not empty
    from safemig.errors import CheckFailed as Refused

    with pytest.raises(Refused, match="20000 large objects"):
        restore_backup(config, "prod", source="latest", target_url=database_url_b)
