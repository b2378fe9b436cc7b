"""The version-aware advice, checked on the real server of each major (CI runs ``-m compat`` on 14-18).

* set-not-null: the steps its hint gives for the server's major run, leave the column NOT NULL
  without a scan under ACCESS EXCLUSIVE (before 18: SET NOT NULL proves it from the validated
  CHECK; on 18: VALIDATE of a NOT NULL ... NOT VALID takes only SHARE UPDATE EXCLUSIVE);
* stored-generated-column: on 18 a virtual generated column adds without a rewrite and cannot be
  indexed, a STORED one rewrites;
* table-rewrite: SET EXPRESSION (17+) rewrites a stored generated column, not a virtual one (18).

"Rewrite" is measured as a new relfilenode of the table.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from safemig.lint.rules import set_not_null

pytestmark = pytest.mark.compat


@pytest.fixture
def conn(database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE orders (id int PRIMARY KEY, total int, currency text)")
        connection.execute("INSERT INTO orders SELECT g, g, 'EUR' FROM generate_series(1, 1000) g")
        yield connection


def _relfilenode(conn) -> int:
    return conn.execute("SELECT relfilenode FROM pg_class WHERE oid = 'orders'::regclass").fetchone()[0]


def _not_null(conn) -> bool:
    return conn.execute(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'currency'"
    ).fetchone()[0]


def test_the_set_not_null_steps_for_this_major_run_and_skip_the_blocking_scan(conn, pg_major):
    hint = set_not_null._two_steps(SimpleNamespace(pg_version=pg_major), "orders", "currency")
    statements = re.findall(r"ALTER TABLE [^;]+;", hint)
    assert statements, hint
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("SET client_min_messages = debug1")
    for sql in statements:
        if "VALIDATE CONSTRAINT" in sql:  # the lock VALIDATE holds, seen from its own transaction
            with conn.transaction(force_rollback=False):
                conn.execute(sql)
                modes = {
                    r[0]
                    for r in conn.execute(
                        "SELECT mode FROM pg_locks WHERE relation = 'orders'::regclass AND pid = pg_backend_pid()"
                    )
                }
            assert modes == {"ShareUpdateExclusiveLock"}, (sql, modes)
        else:
            conn.execute(sql)
    assert _not_null(conn), (pg_major, statements)
    if pg_major >= 18:
        assert len(statements) == 2 and "NOT VALID" in statements[0]  # no SET NOT NULL step at all
    else:  # SET NOT NULL skipped its scan: PostgreSQL says so at DEBUG1
        assert any("sufficient to prove" in n for n in notices), notices
        constraints = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c'"
        ).fetchone()[0]
        assert constraints == 0  # the helper CHECK was dropped


def test_on_18_a_not_valid_not_null_is_added_without_a_scan(conn, pg_major):
    if pg_major < 18:
        pytest.skip("NOT NULL ... NOT VALID is PostgreSQL 18 syntax (unsupported-syntax reports it before 18)")
    conn.execute("INSERT INTO orders VALUES (0, 0, NULL)")  # a NULL row: a scan would fail
    conn.execute("ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null NOT NULL currency NOT VALID")
    import psycopg

    with pytest.raises(psycopg.errors.NotNullViolation):  # new rows are checked at once
        conn.execute("INSERT INTO orders VALUES (-1, 0, NULL)")
    with pytest.raises(psycopg.Error):
        conn.execute("ALTER TABLE orders VALIDATE CONSTRAINT orders_currency_not_null")  # the NULL row is found
    conn.execute("DELETE FROM orders WHERE currency IS NULL")
    conn.execute("ALTER TABLE orders VALIDATE CONSTRAINT orders_currency_not_null")
    assert _not_null(conn)


def test_on_18_a_virtual_generated_column_adds_without_a_rewrite_and_cannot_be_indexed(conn, pg_major):
    if pg_major < 18:
        pytest.skip("virtual generated columns are PostgreSQL 18's")
    import psycopg

    before = _relfilenode(conn)
    conn.execute("ALTER TABLE orders ADD COLUMN total_cents bigint GENERATED ALWAYS AS (total * 100)")
    assert _relfilenode(conn) == before
    with pytest.raises(psycopg.Error, match="virtual generated column"):
        conn.execute("CREATE INDEX ON orders (total_cents)")
    conn.execute("ALTER TABLE orders ADD COLUMN total_x bigint GENERATED ALWAYS AS (total * 10) STORED")
    assert _relfilenode(conn) != before  # what stored-generated-column reports


def test_set_expression_rewrites_a_stored_generated_column_and_not_a_virtual_one(conn, pg_major):
    if pg_major < 17:
        pytest.skip("SET EXPRESSION is PostgreSQL 17's")
    conn.execute("ALTER TABLE orders ADD COLUMN total_cents bigint GENERATED ALWAYS AS (total * 100) STORED")
    before = _relfilenode(conn)
    conn.execute("ALTER TABLE orders ALTER COLUMN total_cents SET EXPRESSION AS (total * 1000)")
    assert _relfilenode(conn) != before  # table-rewrite's finding
    if pg_major >= 18:
        conn.execute("ALTER TABLE orders ADD COLUMN total_v bigint GENERATED ALWAYS AS (total * 100) VIRTUAL")
        before = _relfilenode(conn)
        conn.execute("ALTER TABLE orders ALTER COLUMN total_v SET EXPRESSION AS (total * 1000)")
        assert _relfilenode(conn) == before  # "a virtual column, PostgreSQL 18, is not rewritten"
