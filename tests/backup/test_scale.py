"""Archives one transaction cannot restore (default max_locks_per_transaction): thousands of tables,
20,000 large objects. They restore through the verified local copy, with nothing committed from a
damaged object."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from safemig.backup import restore_backup, run_backup
from safemig.errors import CheckFailed
from tests.backup.test_restore import corrupt_downloads

pytestmark = pytest.mark.slow

# The figure. Each table brings its TOAST table, the TOAST index and a primary key: a
# restore in one transaction holds ~28,000 locks until it commits, where the default lock table
# (max_locks_per_transaction 64 x ~122 backend slots with max_connections 100) holds ~7,800.
TABLES = 7000  # slow: 18 s at load 2.5, 35 s (+35 s dropping the databases) at load 7; 4,000 took 8 s


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_thousands_of_tables_restore_and_a_damaged_copy_commits_nothing(
    project, config, database_url, database_url_b, s3, bucket_name, tmp_path, monkeypatch
):
    with psycopg.connect(database_url, autocommit=True) as conn:
        for first in range(1, TABLES + 1, 500):  # one transaction could not create them all either
            conn.execute(
                f"DO $$ BEGIN FOR i IN {first}..{min(TABLES, first + 499)} LOOP"
                " EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, note text)', i);"
                " EXECUTE format('INSERT INTO t%s VALUES (1, %L)', i, 'row of table ' || i);"
                " END LOOP; END $$"
            )
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_locks_per_transaction', 'max_connections')"
        ).fetchall())
    assert settings == {"max_locks_per_transaction": "64", "max_connections": "100"}  # the defaults
    result = run_backup(config, "prod", database_url=database_url)
    assert result.toc_entries > 3 * TABLES
    # every listing reads each manifest: the data sizes it records stay bounded (the largest 100 blocks)
    manifest = s3.get_object(Bucket=bucket_name, Key=result.key + ".manifest.json")["Body"].read()
    sizes = json.loads(manifest)["data_bytes"]
    assert len(manifest) < 20_000 and sizes["blocks"] >= TABLES and len(sizes["largest"]) == 100

    # The premise, checked rather than estimated: plain pg_restore cannot do it in one transaction.
    archive = tmp_path / "prod.dump"
    archive.write_bytes(s3.get_object(Bucket=bucket_name, Key=result.key)["Body"].read())
    one = subprocess.run(
        ["pg_restore", "--single-transaction", "--exit-on-error", f"--dbname={database_url_b}", str(archive)],
        capture_output=True, text=True,
    )
    assert one.returncode != 0 and "max_locks_per_transaction" in one.stderr, one.stderr[-500:]
    assert _count(database_url_b, "SELECT count(*) FROM pg_class WHERE relname LIKE 't%' AND relkind = 'r'") == 0

    with monkeypatch.context() as patched:
        # Near the end: in the data blocks. With 7,000 tables the TOC is 93% of the archive (measured), and
        # a flipped length field there fails the TOC read (exit 3) before any checksum is known.
        corrupt_downloads(patched, at_fraction=0.999)
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
