"""The rehearsal's pieces on real servers: data scope (targets, catalog closure, pg_restore TOC selection),
schema snapshots and their diff, the scratch database's name and lifecycle."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from safemig.deploy import scratch
from safemig.deploy.schema import diff, snapshot
from safemig.deploy.scope import migration_targets, resolve_scope
from safemig.migrations.files import Migration

SHAPES = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id), total numeric);
CREATE TABLE order_lines (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id), sku text);
CREATE TABLE events (id bigint, at date NOT NULL, kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
CREATE TABLE documents (id bigint PRIMARY KEY, tenant text NOT NULL, body oid);
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_docs ON documents USING (tenant = current_user);
CREATE TABLE unrelated (id bigint PRIMARY KEY, payload text);
CREATE VIEW big_orders AS SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > 100;
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g;
INSERT INTO orders SELECT g, 1 + g % 50, g FROM generate_series(1, 200) g;
INSERT INTO order_lines SELECT g, 1 + g % 200, 'sku' FROM generate_series(1, 400) g;
INSERT INTO events SELECT g, DATE '2026-06-01' + (g % 400), 'k' FROM generate_series(1, 300) g;
INSERT INTO documents VALUES (1, 'postgres', lo_from_bytea(0, 'a large object'));
INSERT INTO unrelated SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g;
"""


def _migration(version: int, sql: str) -> Migration:
    return Migration(
        version=version,
        description=f"m{version}",
        path=Path(f"{version:03d}_m.sql"),
        sql=sql,
        checksum=hashlib.sha384(sql.encode()).digest(),
        no_transaction=False,
    )


def test_targets_come_from_the_parse_tree_including_do_blocks_and_own_functions():
    targets = migration_targets(
        [
            _migration(1, "ALTER TABLE orders ADD CONSTRAINT positive CHECK (total > 0) NOT VALID;"),
            _migration(2, "UPDATE order_lines l SET sku = 'x' FROM orders o WHERE o.id = l.order_id;"),
            _migration(3, "DROP INDEX IF EXISTS idx_old; DO $$ BEGIN UPDATE app.accounts SET x = 1; END $$;"),
            _migration(
                4,
                "CREATE FUNCTION fill() RETURNS void LANGUAGE sql AS $$ UPDATE ledgers SET n = 0 $$; SELECT fill();",
            ),
        ]
    )
    assert {"orders", "order_lines", "idx_old", "app.accounts", "ledgers"} <= targets.names
    assert targets.unknown == ()

    dynamic = migration_targets([_migration(5, "DO $$ BEGIN EXECUTE format('UPDATE %I SET x = 1', 't'); END $$;")])
    assert dynamic.unknown and "EXECUTE" in dynamic.unknown[0]


def test_scope_follows_foreign_keys_partitions_and_views_and_selects_the_toc(tmp_path, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SHAPES)
        scope = resolve_scope(
            conn,
            migration_targets(
                [
                    _migration(1, "ALTER TABLE order_lines ADD COLUMN qty int;"),
                    _migration(2, "CREATE INDEX ON events (kind);"),
                    _migration(3, "ALTER TABLE documents ADD COLUMN title text;"),
                    _migration(4, "CREATE OR REPLACE VIEW big_orders AS SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id;"),
                ]
            ),
        )
        # FK parents of order_lines, every partition of events, the tables under the view; not unrelated
        assert {
            "public.order_lines",
            "public.orders",
            "public.customers",
            "public.events",
            "public.events_2026",
            "public.events_2027",
            "public.documents",
        } <= scope.relations
        assert "public.unrelated" not in scope.relations
        everything = resolve_scope(
            conn, migration_targets([_migration(5, "DO $$ BEGIN EXECUTE 'UPDATE ' || 'unrelated SET id = id'; END $$;")])
        )
        assert everything.everything and "cannot be known" in everything.everything_because

    dump = tmp_path / "db.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump), f"--dbname={database_url}"], check=True)
    toc = subprocess.run(["pg_restore", "-l", str(dump)], check=True, capture_output=True, text=True).stdout.splitlines()
    kept = scope.select(toc)
    data = [line for line in kept if " TABLE DATA " in line]
    assert any(" TABLE DATA public order_lines " in line for line in data)
    assert any(" TABLE DATA public events_2027 " in line for line in data)
    assert not any(" unrelated " in line for line in data)
    assert any(" TABLE public unrelated " in line for line in kept)  # its schema is kept
    assert any(" POLICY public documents tenant_docs " in line for line in kept)  # RLS stays
    assert not any(" BLOBS " in line or " BLOB DATA " in line for line in kept)  # large objects' contents left out
    assert everything.select(toc) == toc


def test_schema_diff_names_what_a_rollback_left_behind_or_removed(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, a text); CREATE TYPE mood AS ENUM ('ok');"
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        )
        before = snapshot(conn)
        conn.execute(
            "ALTER TABLE t ADD COLUMN b int; CREATE INDEX t_a ON t (a); ALTER TABLE t ADD CONSTRAINT a_nonempty CHECK (a <> '');"
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON t USING (true);"
            "CREATE TABLE extra (id int); DROP FUNCTION f(); ALTER TYPE mood ADD VALUE 'meh';"
        )
        found = {(d.kind, d.name, d.change) for d in diff(before, snapshot(conn))}
    assert ("column", "public.t.b", "left behind") in found
    assert ("index", "public.t_a", "left behind") in found
    assert ("constraint", "public.t.a_nonempty", "left behind") in found
    assert ("policy", "public.t.p", "left behind") in found
    assert ("table", "public.extra", "left behind") in found
    assert ("function", "public.f()", "missing") in found
    assert ("type", "public.mood", "changed") in found
    assert ("table", "public.t", "changed") in found  # row level security switched on
    assert not any(name.startswith("public.extra.") for _, name, _ in found)  # the table says it


def test_scratch_name_fits_63_bytes_and_the_database_is_dropped_even_on_ctrl_c(pg_cluster_b, database_url_b):
    moment = datetime(2026, 12, 1, 19, 30, tzinfo=UTC)
    assert scratch.scratch_name("forgeerp", moment) == "forgeerp_rehearsal_20261201t193000z"
    long = scratch.scratch_name("é" * 40, moment)
    assert len(long.encode()) <= 63 and long.endswith("_rehearsal_20261201t193000z")

    with psycopg.connect(database_url_b, autocommit=True) as admin:
        with pytest.raises(KeyboardInterrupt):
            with scratch.scratch_database(admin, database_url_b, "t_scratch_ctrl_c", encoding="UTF8", keep=False, warn=print) as url:
                assert scratch.exists(database_url_b, "t_scratch_ctrl_c")
                with psycopg.connect(url) as inside:  # a session left open in it does not stop the drop
                    inside.execute("SELECT 1")
                    raise KeyboardInterrupt
        assert not scratch.exists(database_url_b, "t_scratch_ctrl_c")
        with scratch.scratch_database(admin, database_url_b, "t_scratch_kept", encoding="UTF8", keep=True, warn=print):
            pass
        assert scratch.exists(database_url_b, "t_scratch_kept")
        scratch.drop(database_url_b, "t_scratch_kept")


def test_read_plan_is_the_plan_a_dry_run_shows(project, monkeypatch):
    """The one plan builder, as ``safemig runbook`` reads it (one short connection, no lock)."""
    from safemig.config import load_config
    from safemig.deploy.plan import read_plan

    for key, value in project.env.items():
        monkeypatch.setenv(key, value)
    project.apply_directly(project.prod_url, [1])
    project.write_config(rehearsal='"staging"')
    plan, prod = read_plan(load_config(project.root / "safemig.toml"), "prod")
    assert [item.migration.version for item in plan.items] == [2, 3] and set(prod.rows) == {1}
    assert plan.rehearsal == "staging" and plan.rehearsal_step().startswith("rehearse on staging: compare its schema")
    assert plan.backup_destination == f"s3://{project.bucket}/t/prod/"
    assert plan.as_dict(project.root)["pending"][0]["rollback"] == "rollbacks/002_rollback_note.sql"
