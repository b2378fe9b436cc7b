"""The engine's promises: false positives avoided, sqlglot's fallbacks still checked, ignores, policy, cache."""

from __future__ import annotations

import pytest

from safemig.errors import ConfigError, UsageError
from tests.lint.conftest import REPO_ROOT, rules_of


def _ids(report):
    return sorted({f.rule for f in report.findings})


def _without_lock_timeout(report):
    """Findings other than missing-lock-timeout (a warning most examples here would also get)."""
    return [f for f in report.findings if f.rule != "missing-lock-timeout"]


# --- parsing: never pass what was not understood -------------------------------------------------

def test_drop_inside_function_body_or_string_is_not_a_drop(project):
    project.write("migrations/005_add_cleanup_function.sql", """
CREATE OR REPLACE FUNCTION purge_old() RETURNS void AS $body$
BEGIN
    DROP TABLE IF EXISTS scratch;  -- runs when called, not in the migration
    EXECUTE 'DROP TABLE legacy';
END
$body$ LANGUAGE plpgsql;
SELECT 'DROP TABLE orders; TRUNCATE orders', E'it\\'s DROP TABLE x';
/* DROP TABLE commented_out; */
""")
    report = project.lint()
    assert rules_of(report, "drop-without-rollback") == []
    assert rules_of(report, "not-idempotent") == []


def test_drop_if_exists_with_rollback_present_passes(project):
    project.write("migrations/005_drop_legacy_orders.sql", "DROP TABLE IF EXISTS legacy_orders;\n")
    project.write("rollbacks/005_restore_legacy_orders.sql", "CREATE TABLE IF NOT EXISTS legacy_orders (id bigint);\n")
    report = project.lint()
    assert _without_lock_timeout(report) == []
    assert "rollbacks/005_restore_legacy_orders.sql" in report.files  # the rollback is linted too


def test_drop_with_empty_or_broken_rollback_fails(project):
    project.write("migrations/005_drop_legacy_orders.sql", "DROP TABLE IF EXISTS legacy_orders;\n")
    project.write("rollbacks/005_restore_legacy_orders.sql", "-- nothing yet\n")
    assert "empty rollback script" in rules_of(project.lint(), "drop-without-rollback")[0].message
    project.write("rollbacks/005_restore_legacy_orders.sql", "CREATE TABLE legacy_orders (id bigint,,);\n")
    report = project.lint()
    assert "does not parse" in rules_of(report, "drop-without-rollback")[0].message
    assert rules_of(report, "rollback-invalid")
    broken = [f for f in rules_of(report, "syntax-error") if f.path.startswith("rollbacks/")]
    assert broken and broken[0].line == 1 and broken[0].column == 39


def test_rollback_scripts_get_syntax_checks_but_not_naming_or_drop_rules(project):
    project.write("rollbacks/005_undo.sql", "DROP TABLE IF EXISTS orders;\nSELEC 1;\n")
    (finding,) = _without_lock_timeout(project.lint("rollbacks"))
    assert (finding.rule, finding.line) == ("syntax-error", 2)


def test_drop_recreate_idiom_is_not_destructive(project):
    project.write("migrations/005_refresh_trigger.sql", """
DROP TRIGGER IF EXISTS orders_touch ON orders;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
""")
    report = project.lint()
    assert rules_of(report, "drop-without-rollback") == []
    assert rules_of(report, "not-idempotent") == []


def test_drop_cascade_then_recreate_is_destructive(project):
    # CASCADE drops what depends on the function too: a generated column using it loses its data.
    project.write("migrations/005_refresh_price_function.sql", """
DROP FUNCTION IF EXISTS net_price(numeric) CASCADE;
CREATE OR REPLACE FUNCTION net_price(p numeric) RETURNS numeric IMMUTABLE LANGUAGE sql AS 'SELECT p * 0.8';
""")
    (finding,) = rules_of(project.lint(), "drop-without-rollback")
    assert "DROP FUNCTION net_price" in finding.message


def test_diesel_drop_hint_names_down_sql(project):
    project.write("migrations/20240101000000_drop_legacy/up.sql", "ALTER TABLE orders DROP COLUMN IF EXISTS legacy;\n")
    (finding,) = rules_of(project.lint(), "drop-without-rollback")
    assert finding.hint.startswith("write in down.sql beside it the SQL that restores")
    project.write("migrations/20240101000000_drop_legacy/down.sql", "ALTER TABLE orders ADD COLUMN IF NOT EXISTS legacy text;\n")
    assert rules_of(project.lint(), "drop-without-rollback") == []


@pytest.mark.parametrize("sql, rule", [
    # sqlglot turns these into an opaque Command; PostgreSQL's node type still routes them to the rules.
    ("ALTER TABLE orders DROP COLUMN IF EXISTS note, ENABLE ROW LEVEL SECURITY;", "drop-without-rollback"),
    ("DROP POLICY IF EXISTS orders_tenant ON orders;", "drop-without-rollback"),
    ("DROP EXTENSION IF EXISTS pgcrypto;", "drop-without-rollback"),
    ("DROP OWNED BY legacy_app;", "drop-without-rollback"),  # drops every table the role owns
    ("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES c (id), ENABLE ROW LEVEL SECURITY;", "constraint-without-not-valid"),
    ("ALTER TABLE orders ADD COLUMN IF NOT EXISTS c text NOT NULL, ENABLE ROW LEVEL SECURITY;", "not-null-column-without-default"),
    ("ALTER TABLE orders ADD PRIMARY KEY (id), ENABLE ROW LEVEL SECURITY;", "unique-without-index"),
    ("ALTER TABLE orders ADD COLUMN IF NOT EXISTS p json, ENABLE ROW LEVEL SECURITY;", "json-column"),
    # sqlglot parses this column rename as a table rename
    ("ALTER TABLE orders RENAME total TO amount;", "rename"),
    ("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;", "explicit-lock"),
    ("VACUUM FULL orders;", "vacuum-full"),
    ("REINDEX TABLE orders;", "reindex-without-concurrently"),
    ("CREATE EXTENSION pgcrypto;", "not-idempotent"),
    ("CREATE POLICY p ON orders USING (true);", "not-idempotent"),
    ("CREATE TYPE mood AS ENUM ('ok');", "not-idempotent"),
    ("DO $$ BEGIN CREATE TYPE mood AS ENUM ('ok'); END $$;", "not-idempotent"),
])
def test_statements_sqlglot_cannot_parse_are_still_checked(project, sql, rule):
    project.write("migrations/005_change_orders.sql", sql + "\n")
    assert rules_of(project.lint(), rule), f"{rule} missed: {sql}"


def test_column_rename_message_names_the_column(project):
    project.write("migrations/005_rename_total.sql", "ALTER TABLE orders RENAME total TO amount;\n")
    (finding,) = rules_of(project.lint(), "rename")
    assert "column orders.total to amount" in finding.message


def test_drop_and_rename_run_by_a_do_block_are_caught(project):
    # Unlike a function body, a DO block's body runs with the migration.
    project.write("migrations/005_clear_legacy.sql", """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'legacy') THEN
        DROP TABLE legacy;
    END IF;
    EXECUTE 'TRUNCATE sessions';
    ALTER TABLE orders RENAME total TO amount;
END $$;
""")
    report = project.lint()
    (drop,) = rules_of(report, "drop-without-rollback")
    assert "DROP TABLE legacy, TRUNCATE sessions" in drop.message
    assert "column orders.total to amount" in rules_of(report, "rename")[0].message
    project.write("rollbacks/005_restore_legacy.sql", "CREATE TABLE IF NOT EXISTS legacy (id bigint);\n")
    assert rules_of(project.lint(), "drop-without-rollback") == []


PURGE_FUNCTION = """
CREATE OR REPLACE FUNCTION purge_legacy() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
    DROP TABLE IF EXISTS legacy;
    EXECUTE 'TRUNCATE sessions';
    ALTER TABLE orders RENAME total TO amount;
END
$body$;
"""


@pytest.mark.parametrize("call", ["SELECT purge_legacy();", "SELECT public.purge_legacy() FROM (VALUES (1)) AS v (x);",
                                  "DO $$ BEGIN PERFORM purge_legacy(); END $$;",
                                  "CREATE OR REPLACE PROCEDURE run_purge() LANGUAGE plpgsql AS $$ BEGIN "
                                  "PERFORM purge_legacy(); END $$;\nCALL run_purge();"])
def test_drop_and_rename_in_a_function_the_migration_creates_and_calls_are_caught(project, call):
    # Called by the migration, the function's body runs with it, like a DO block's.
    project.write("migrations/005_clear_legacy.sql", PURGE_FUNCTION + call + "\n")
    report = project.lint()
    (drop,) = rules_of(report, "drop-without-rollback")
    assert "DROP TABLE legacy, TRUNCATE sessions" in drop.message
    assert drop.line == PURGE_FUNCTION.count("\n") + 1 + call.count("\n")  # the call, not the definition
    assert "column orders.total to amount" in rules_of(report, "rename")[0].message


@pytest.mark.parametrize("routine, call", [
    ("CREATE OR REPLACE FUNCTION purge_legacy() RETURNS void LANGUAGE sql AS 'DROP TABLE IF EXISTS legacy; "
     "TRUNCATE sessions'", "SELECT purge_legacy()"),
    ("CREATE OR REPLACE PROCEDURE purge_legacy() LANGUAGE sql BEGIN ATOMIC DELETE FROM sessions; "
     "TRUNCATE legacy; END", "CALL purge_legacy()"),
])
def test_sql_routines_the_migration_creates_and_calls_are_read_too(project, routine, call):
    project.write("migrations/005_clear_legacy.sql", f"{routine};\n{call};\n")
    (drop,) = rules_of(project.lint(), "drop-without-rollback")
    assert drop.line == 2 and "legacy" in drop.message


@pytest.mark.parametrize("call", ["", "SELECT \"Purge_legacy\"();", "SELECT purge_legacy_v2();",
                                  "SELECT 'purge_legacy()';"])
def test_a_function_the_migration_does_not_call_runs_nothing(project, call):
    project.write("migrations/005_clear_legacy.sql", "SELECT purge_legacy();\n" + PURGE_FUNCTION + call + "\n")
    report = project.lint()  # called only before it is (re)defined here: that is another body
    assert rules_of(report, "drop-without-rollback") == rules_of(report, "rename") == []


@pytest.mark.parametrize("body, message", [
    ("UPDATE orders SET status = 'new';", "safemig does not review the UpdateStmt that backfill() runs"),
    ("EXECUTE 'ALTER TABLE ' || 'orders' || ' ADD COLUMN x int';", "safemig cannot see what backfill() runs: EXECUTE"),
])
def test_what_a_called_function_runs_but_no_rule_checks_gets_a_human(project, body, message):
    project.write("migrations/005_backfill.sql", f"""SET lock_timeout = '5s';
CREATE OR REPLACE FUNCTION backfill() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    {body}
END $$;
SELECT backfill();
""")
    (finding,) = rules_of(project.lint(), "unrecognized-statement")
    assert finding.line == 6 and finding.message.startswith(message)
    path = project.root / "migrations/005_backfill.sql"
    path.write_text(path.read_text().replace("SELECT backfill();", ""))
    assert rules_of(project.lint(), "unrecognized-statement") == []  # created, never run


def test_do_block_drop_and_recreate_passes_and_computed_execute_is_warned(project):
    project.write("migrations/005_refresh_policy.sql", """
SET lock_timeout = '5s';
DO $$
BEGIN
    DROP POLICY IF EXISTS orders_tenant ON orders;
    CREATE POLICY orders_tenant ON orders USING (tenant_id = current_setting('app.tenant')::uuid);
END $$;
""")
    assert project.lint().findings == []
    project.write("migrations/005_refresh_policy.sql", """
DO $$
BEGIN
    EXECUTE format('DROP TABLE %I', 'orders_' || to_char(now(), 'YYYY'));
END $$;
""")
    (finding,) = project.lint().findings
    assert (finding.rule, finding.severity) == ("unrecognized-statement", "warning")
    assert "EXECUTE format(" in finding.message


def test_locking_statements_run_by_a_do_block_are_warned_never_passed(project):
    project.write("migrations/005_widen_total.sql", """SET lock_timeout = '5s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total') THEN
        ALTER TABLE orders ALTER COLUMN total TYPE numeric(14, 2);
    END IF;
END $$;
""")
    (finding,) = project.lint().findings
    assert (finding.rule, finding.severity, finding.line) == ("unrecognized-statement", "warning", 2)
    assert "AlterTableStmt" in finding.message
    project.write("migrations/005_widen_total.sql", """SET lock_timeout = '5s';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'orders_total_check') THEN
        ALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total > 0) NOT VALID;
    END IF;
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
END $$;
""")
    assert project.lint().findings == []  # the guarded idioms of idempotent migrations are quick


def test_guarded_do_block_counts_as_idempotent(project):
    project.write("migrations/005_add_mood.sql", """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN
        CREATE TYPE mood AS ENUM ('ok');
    END IF;
END $$;
""")
    assert project.lint().findings == []


def test_unknown_statement_kinds_are_warned_never_passed(project):
    project.write("migrations/005_tune.sql", "ALTER SYSTEM SET work_mem = '64MB';\n")
    (finding,) = project.lint().findings
    assert (finding.rule, finding.severity) == ("unrecognized-statement", "warning")


def test_syntax_error_location_is_the_token_postgres_rejects(project):
    project.write("migrations/005_add_notes.sql", "-- notes\nSELECT 1;\n\nALTER TABLE orders\n    ADD COLUMN IF NOT EXISTS note text text;\n")
    (finding,) = project.lint().findings
    assert (finding.rule, finding.line, finding.column) == ("syntax-error", 5, 40)


def test_unterminated_dollar_quote_is_a_syntax_error(project):
    project.write("migrations/005_add_fn.sql", "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1;\n")
    (finding,) = project.lint().findings
    assert finding.rule == "syntax-error" and "unterminated" in finding.message


# --- the existing-table exemption ----------------------------------------------------------------

EXISTING_TABLE_CHANGES = """
CREATE INDEX IF NOT EXISTS idx_invoices_number ON invoices (number);
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS total numeric NOT NULL;
ALTER TABLE invoices ALTER COLUMN number SET NOT NULL;
ALTER TABLE invoices DROP CONSTRAINT IF EXISTS invoices_number_key, ADD CONSTRAINT invoices_number_key UNIQUE (number);
ALTER TABLE invoices DROP CONSTRAINT IF EXISTS invoices_total_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_total_check CHECK (total > 0);
UPDATE invoices SET total = 0;
"""


def test_tables_created_in_the_same_file_are_exempt_from_existing_table_rules(project):
    project.write("migrations/005_create_invoices.sql",
                  "CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY, number text);" + EXISTING_TABLE_CHANGES)
    assert project.lint().findings == []


def test_a_table_created_in_another_schema_does_not_exempt_an_existing_one(project):
    project.write("migrations/005_create_audit_events.sql", """SET lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS audit.events (id bigint PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE INDEX IF NOT EXISTS idx_audit_events_tenant ON audit.events (tenant_id);
CREATE INDEX IF NOT EXISTS idx_events_tenant ON events (tenant_id);
""")
    (finding,) = project.lint().findings
    assert (finding.rule, finding.line) == ("index-without-concurrently", 4)
    project.write("migrations/005_create_audit_events.sql", """
CREATE TABLE IF NOT EXISTS events (id bigint PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE INDEX IF NOT EXISTS idx_events_tenant ON public.events (tenant_id);
""")
    assert project.lint().findings == []


@pytest.mark.parametrize("created, altered", [('"Orders"', "orders"), ("orders", '"Orders"'),
                                              ('"Billing".orders', "billing.orders")])
def test_a_quoted_name_is_another_table_than_the_unquoted_one(project, created, altered):
    # PostgreSQL folds unquoted names in the tree already: "Orders" and orders are two tables.
    project.write("migrations/005_create_orders.sql", f"""SET lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS {created} (id bigint PRIMARY KEY, number text);
ALTER TABLE {altered} ADD COLUMN IF NOT EXISTS total numeric NOT NULL;
""")
    assert [(f.rule, f.line) for f in project.lint().findings] == [("not-null-column-without-default", 3)]
    project.write("migrations/005_create_orders.sql", f"""SET lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS {created} (id bigint PRIMARY KEY, number text);
ALTER TABLE {created} ADD COLUMN IF NOT EXISTS total numeric NOT NULL;
""")
    assert project.lint().findings == []


def test_quoted_names_are_compared_as_postgresql_compares_them(project):
    project.write("migrations/005_refresh_objects.sql", """-- no-transaction
SET lock_timeout = '5s';
DROP TRIGGER IF EXISTS "Touch" ON orders;
CREATE OR REPLACE TRIGGER touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
DROP TYPE IF EXISTS "Mood";
CREATE TYPE mood AS ENUM ('ok');
CREATE TABLE IF NOT EXISTS carts (id bigint);
CREATE INDEX IF NOT EXISTS "Idx_carts" ON carts (id);
DROP INDEX IF EXISTS idx_carts;
DO $$ BEGIN DROP TYPE IF EXISTS "Size"; CREATE TYPE size AS ENUM ('s'); END $$;
DO $$ BEGIN DROP TYPE IF EXISTS "Size"; CREATE TYPE "Size" AS ENUM ('s'); END $$;
""")
    report = project.lint()
    assert "DROP TRIGGER Touch" in rules_of(report, "drop-without-rollback")[0].message  # touch is another trigger
    assert [f.line for f in rules_of(report, "not-idempotent")] == [6, 10]  # "Mood" is another type than mood
    assert [f.line for f in rules_of(report, "index-without-concurrently")] == [9]


def test_function_and_type_names_are_not_folded_twice(project):
    # "Random"() is a user's function and "SERIAL" a user's type, not random() and serial.
    project.write("migrations/005_add_columns.sql", """SET lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS pick int DEFAULT "Random"();
ALTER TABLE orders ADD COLUMN IF NOT EXISTS seq "SERIAL";
ALTER TABLE orders ADD COLUMN IF NOT EXISTS doc "JSON";
ALTER TABLE orders DROP CONSTRAINT IF EXISTS "Total_check", ADD CONSTRAINT "Total_check" CHECK (total > 0) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT total_check;
""")
    # "Random"() is not random(): an unknown function, so volatile (and the finding says why)
    (finding,) = project.lint().findings
    assert finding.rule == "volatile-default" and "Random() is not a PostgreSQL 15 built-in" in finding.message


@pytest.mark.parametrize("create", [
    "SELECT id, number INTO invoices FROM legacy_invoices",
    "SELECT id, number INTO invoices FROM legacy_invoices UNION ALL SELECT id, number FROM old_invoices",
    "CREATE TABLE IF NOT EXISTS invoices AS SELECT id, number FROM legacy_invoices",
])
def test_select_into_and_create_table_as_create_a_new_table(project, create):
    project.write("migrations/005_create_invoices.sql", create + ";" + EXISTING_TABLE_CHANGES)
    # the later statements are on a new table; only SELECT INTO itself cannot be re-run
    assert _ids(project.lint()) == (["not-idempotent"] if " INTO " in create else [])


@pytest.mark.parametrize("sql, what", [
    ("ALTER TYPE address DROP ATTRIBUTE IF EXISTS zip;", "DROP ATTRIBUTE zip"),
    ("ALTER TYPE billing.address DROP ATTRIBUTE IF EXISTS zip CASCADE;", "DROP ATTRIBUTE zip"),
    ("ALTER DOMAIN positive_amount DROP CONSTRAINT IF EXISTS amount_check;", "DROP CONSTRAINT amount_check"),
])
def test_dropping_a_type_attribute_or_domain_constraint_is_a_drop(project, sql, what):
    project.write("migrations/005_drop_zip.sql", sql + "\n")
    (finding,) = project.lint().findings
    assert finding.rule == "drop-without-rollback" and what in finding.message


@pytest.mark.parametrize("sql, hint", [
    ("ALTER TYPE billing.\"Address\" DROP ATTRIBUTE zip;", 'ALTER TYPE billing."Address" DROP ATTRIBUTE IF EXISTS zip'),
    ("ALTER DOMAIN positive_amount DROP CONSTRAINT \"Amount_check\";",
     'ALTER DOMAIN positive_amount DROP CONSTRAINT IF EXISTS "Amount_check"'),
])
def test_type_attribute_or_domain_constraint_drop_without_if_exists(project, sql, hint):
    project.write("migrations/005_drop_zip.sql", sql + "\n")
    project.write("rollbacks/005_restore_zip.sql", "SELECT 1;\n")
    (finding,) = project.lint().findings
    assert (finding.rule, finding.hint) == ("not-idempotent", f"write {hint}")


def test_same_statements_on_an_existing_table_are_flagged(project):
    project.write("migrations/005_change_invoices.sql", EXISTING_TABLE_CHANGES)
    assert _ids(project.lint()) == ["constraint-without-not-valid", "index-without-concurrently", "missing-lock-timeout",
                                    "not-null-column-without-default", "set-not-null", "unbounded-dml",
                                    "unique-without-index"]


def test_adding_a_serial_or_identity_column_to_an_existing_table_is_a_rewrite(project):
    # Checked on PostgreSQL: both change the table's relfilenode (every row gets nextval()).
    project.write("migrations/005_number_orders.sql", """SET lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS seq bigserial;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS num bigint GENERATED ALWAYS AS IDENTITY;
CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY);
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS num bigint GENERATED ALWAYS AS IDENTITY;
""")
    assert [(f.line, f.severity) for f in rules_of(project.lint(), "volatile-default")] == [(2, "error"), (3, "error")]


def test_unbounded_delete_or_update_in_a_with_clause_is_flagged(project):
    project.write("migrations/005_archive_orders.sql", """
WITH gone AS (DELETE FROM orders RETURNING *) INSERT INTO orders_archive SELECT * FROM gone;
WITH moved AS (DELETE FROM carts WHERE created_at < '2020-01-01' RETURNING *) INSERT INTO carts_archive SELECT * FROM moved;
WITH touched AS (UPDATE invoices SET paid = true RETURNING id) SELECT count(*) FROM touched;
""")
    assert [(f.line, f.message) for f in rules_of(project.lint(), "unbounded-dml")] == [
        (2, "DELETE without WHERE (in a WITH clause) touches every row of orders"),
        (4, "UPDATE without WHERE (in a WITH clause) touches every row of invoices"),
    ]


def test_constraints_written_on_an_added_column_are_checked(project):
    project.write("migrations/005_link_orders.sql", """SET lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS code text UNIQUE;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS customer_id bigint DEFAULT 1 REFERENCES customers (id);
ALTER TABLE orders ADD COLUMN IF NOT EXISTS qty int DEFAULT 0 CHECK (qty >= 0);
CREATE TABLE IF NOT EXISTS carts (id bigint PRIMARY KEY);
ALTER TABLE carts ADD COLUMN IF NOT EXISTS customer_id bigint REFERENCES customers (id) UNIQUE;
""")
    report = project.lint()
    (unique,) = rules_of(report, "unique-without-index")
    assert unique.line == 2 and "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_code_key_idx ON orders (code)" in unique.hint
    foreign, check = rules_of(report, "constraint-without-not-valid")
    assert (foreign.line, check.line) == (3, 4)
    assert ("ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) "
            "NOT VALID") in foreign.hint


def test_not_null_with_default_null_is_still_without_default(project):
    project.write("migrations/005_add_region.sql", """SET lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS region text NOT NULL DEFAULT NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS zone text NOT NULL DEFAULT NULL::text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS area text NOT NULL DEFAULT 'eu';
""")
    assert [f.line for f in rules_of(project.lint(), "not-null-column-without-default")] == [2, 3]


def test_hints_use_the_users_names(project):
    project.write("migrations/005_require_currency.sql", 'ALTER TABLE "Billing".orders ALTER COLUMN "Currency" SET NOT NULL;\n')
    (finding,) = rules_of(project.lint(), "set-not-null")
    assert 'ALTER TABLE "Billing".orders ADD CONSTRAINT "orders_Currency_not_null" CHECK ("Currency" IS NOT NULL) NOT VALID' in finding.hint


# --- table-rewrite ---------------------------------------------------------------------------------

TABLE_REWRITES = [
    ("ALTER TABLE orders SET TABLESPACE fast_ssd;", "SET TABLESPACE fast_ssd rewrites all of orders",
     "pg_repack --table orders --tablespace fast_ssd"),
    ("ALTER TABLE billing.\"Orders\" SET TABLESPACE \"Fast\";", 'SET TABLESPACE Fast rewrites all of billing.Orders',
     """pg_repack --table 'billing."Orders"' --tablespace Fast"""),
    ("ALTER TABLE orders SET LOGGED;", "SET LOGGED rewrites all of orders",
     "CREATE TABLE IF NOT EXISTS orders_new (LIKE orders INCLUDING ALL);"),
    ("ALTER TABLE orders SET UNLOGGED;", "SET UNLOGGED rewrites all of orders",
     "CREATE UNLOGGED TABLE IF NOT EXISTS orders_new (LIKE orders INCLUDING ALL);"),
    ("ALTER TABLE orders SET ACCESS METHOD columnar;", "SET ACCESS METHOD columnar rewrites all of orders",
     "CREATE TABLE IF NOT EXISTS orders_new (LIKE orders INCLUDING ALL) USING columnar;"),
    ("CLUSTER orders USING idx_orders_created_at;", "CLUSTER rewrites all of orders",
     "ALTER TABLE orders CLUSTER ON idx_orders_created_at; then, outside the migration: pg_repack --table orders"),
    ("CLUSTER orders;", "CLUSTER rewrites all of orders", "outside the migration: pg_repack --table orders"),
    ("CLUSTER;", "CLUSTER without a table rewrites every table clustered before", "pg_repack --table <table>"),
    ("ALTER TABLE bookings DROP CONSTRAINT IF EXISTS bookings_no_overlap, "
     "ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
     "EXCLUDE constraint bookings_no_overlap on bookings builds its index while blocking reads and writes",
     "ALTER TABLE bookings_new ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);"),
    ("ALTER TABLE billing.\"Bookings\" ADD CONSTRAINT b_during EXCLUDE USING gist (during WITH &&), "
     "ADD COLUMN IF NOT EXISTS note text;",
     "EXCLUDE constraint b_during on billing.Bookings", 'CREATE TABLE IF NOT EXISTS billing."Bookings_new" (LIKE billing."Bookings" '
     'INCLUDING ALL); ALTER TABLE billing."Bookings_new" ADD CONSTRAINT b_during EXCLUDE USING gist (during WITH &&); '
     'copy the rows'),
    ("ALTER INDEX idx_orders_created_at SET TABLESPACE fast_ssd;",
     "SET TABLESPACE fast_ssd copies index idx_orders_created_at while blocking writes",
     "REINDEX INDEX CONCURRENTLY idx_orders_created_at TABLESPACE fast_ssd;"),
    ("ALTER MATERIALIZED VIEW order_totals SET TABLESPACE fast_ssd;",
     "SET TABLESPACE fast_ssd copies materialized view order_totals while blocking every read",
     "TABLESPACE fast_ssd AS ...) and swap the names"),
    ("ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE fast_ssd;",
     "ALL IN TABLESPACE pg_default copies every table there to fast_ssd",
     "pg_repack --table <table> --tablespace fast_ssd --moveidx"),
    ("REFRESH MATERIALIZED VIEW order_totals;", "REFRESH MATERIALIZED VIEW order_totals blocks every read of it",
     "REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals; (it needs a unique index on the view: "
     "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS order_totals_key_idx ON order_totals (<key columns>)"),
]


@pytest.mark.parametrize("sql, message, hint", TABLE_REWRITES)
def test_table_rewrites_of_an_existing_table_are_errors(project, sql, message, hint):
    project.write("migrations/005_move_orders.sql", "SET lock_timeout = '5s';\n" + sql + "\n")
    (finding,) = [f for f in project.lint().findings if f.rule != "not-idempotent"]
    assert (finding.rule, finding.severity, finding.line) == ("table-rewrite", "error", 2)
    assert message in finding.message
    assert hint in finding.hint


@pytest.mark.parametrize("sql", [sql for sql, _, _ in TABLE_REWRITES])
def test_table_rewrites_take_access_exclusive_locks_without_a_lock_timeout(project, sql):
    project.write("migrations/005_move_orders.sql", sql + "\n")
    assert [f.line for f in rules_of(project.lint(), "missing-lock-timeout")] == [1]


def test_select_into_is_not_idempotent(project):
    project.write("migrations/005_snapshot.sql", "SELECT id, total INTO orders_snapshot FROM orders;\n")
    (finding,) = rules_of(project.lint(), "not-idempotent")
    assert finding.message == "SELECT ... INTO orders_snapshot fails when the migration is re-run"
    assert finding.hint.startswith("write CREATE TABLE IF NOT EXISTS orders_snapshot AS SELECT")


def test_table_rewrite_leaves_new_tables_and_online_forms_alone(project):
    project.write("migrations/005_create_bookings.sql", """
CREATE TABLE IF NOT EXISTS bookings (id bigint PRIMARY KEY, room int, during tstzrange);
ALTER TABLE bookings SET TABLESPACE fast_ssd, SET UNLOGGED;
ALTER TABLE bookings DROP CONSTRAINT IF EXISTS bookings_no_overlap,
    ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);
CLUSTER bookings USING bookings_pkey;
CREATE MATERIALIZED VIEW IF NOT EXISTS booking_counts AS SELECT room, count(*) FROM bookings GROUP BY room WITH NO DATA;
REFRESH MATERIALIZED VIEW booking_counts;
REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;
ALTER TABLE orders CLUSTER ON idx_orders_created_at;
CREATE INDEX IF NOT EXISTS idx_bookings_room ON bookings (room);
ALTER INDEX idx_bookings_room SET TABLESPACE fast_ssd;
""")
    assert project.lint().findings == []


@pytest.mark.parametrize("sql, rule", [
    ("VACUUM FULL orders;", "vacuum-full"),
    ("REINDEX TABLE orders;", "reindex-without-concurrently"),
    ("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;", "explicit-lock"),
    ("ALTER TABLE orders ALTER COLUMN total TYPE numeric(14, 2);", "change-column-type"),
    ("ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE (number);", "unique-without-index"),
    ("ALTER TABLE orders ADD PRIMARY KEY (id);", "unique-without-index"),
])
def test_table_rewrite_does_not_repeat_what_other_rules_report(project, sql, rule):
    project.write("migrations/005_change_orders.sql", "SET lock_timeout = '5s';\n" + sql + "\n")
    ids = _ids(project.lint())
    assert rule in ids and "table-rewrite" not in ids


def test_lock_timeout_set_first_satisfies_the_rule(project):
    project.write("migrations/005_add_note.sql", "SET lock_timeout = '5s';\nALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n")
    assert project.lint().findings == []


def test_set_local_lock_timeout_does_nothing_without_a_transaction(project):
    project.write("migrations/005_add_note.sql",
                  "-- no-transaction\nSET LOCAL lock_timeout = '5s';\nALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n")
    assert [f.line for f in rules_of(project.lint(), "missing-lock-timeout")] == [3]
    project.write("migrations/005_add_note.sql", "SET LOCAL lock_timeout = '5s';\nALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n")
    assert project.lint().findings == []


def test_concurrently_needs_no_transaction(project):
    sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_c ON orders (c);\n"
    project.write("migrations/005_index_orders.sql", sql)
    assert _ids(project.lint()) == ["concurrently-in-transaction"]
    project.write("migrations/005_index_orders.sql", "-- no-transaction\n" + sql)
    assert project.lint().findings == []


def test_refresh_materialized_view_concurrently_runs_in_a_transaction(project):
    # Checked on PostgreSQL: unlike CREATE INDEX CONCURRENTLY, it works inside BEGIN ... COMMIT.
    project.write("migrations/005_refresh_totals.sql", "REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;\n")
    assert rules_of(project.lint(), "concurrently-in-transaction") == []


def test_vacuum_needs_no_transaction(project):
    # Checked on PostgreSQL: "VACUUM cannot run inside a transaction block"; ANALYZE can.
    project.write("migrations/005_vacuum_orders.sql", "VACUUM (ANALYZE) orders;\nANALYZE orders;\n")
    assert [(f.line, f.message) for f in rules_of(project.lint(), "concurrently-in-transaction")] == [
        (1, "VACUUM cannot run inside the transaction sqlx wraps this migration in")]
    project.write("migrations/005_vacuum_orders.sql", "-- no-transaction\nVACUUM (ANALYZE) orders;\n")
    assert project.lint().findings == []


def test_transaction_control_and_validate_in_same_transaction(project):
    project.write("migrations/005_check_total.sql", """BEGIN;
SET lock_timeout = '5s';
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_total_check,
    ADD CONSTRAINT orders_total_check CHECK (total > 0) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_total_check;
COMMIT;
""")
    project.write("rollbacks/005_rollback_check_total.sql", "SET lock_timeout = '5s';\nALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_total_check;\n")
    assert _ids(project.lint()) == ["transaction-control", "validate-in-same-transaction"]


# --- file naming ----------------------------------------------------------------------------------

def test_file_naming_width_uniqueness_and_no_version(project):
    project.write("migrations/001_create_orders.sql", "SELECT 1;\n")
    project.write("migrations/0002_add_notes.sql", "SELECT 1;\n")
    project.write("migrations/001_add_index.sql", "SELECT 1;\n")
    project.write("migrations/orders.sql", "SELECT 1;\n")
    messages = [(f.path, f.message) for f in rules_of(project.lint(), "file-naming")]
    assert ("migrations/0002_add_notes.sql", "version 0002 is 4 digits wide; the other migrations use 3") in messages
    assert any(p == "migrations/001_add_index.sql" and "also used by 001_create_orders.sql" in m for p, m in messages)
    assert any(p == "migrations/orders.sql" and "no <VERSION>_ prefix" in m for p, m in messages)


def test_timestamp_versions_and_diesel_layout(project):
    project.write("migrations/20240101120000_create_orders/up.sql", "CREATE TABLE IF NOT EXISTS orders (id bigint);\n")
    project.write("migrations/20240101120000_create_orders/down.sql", "DROP TABLE IF EXISTS orders;\n")
    project.write("migrations/20240102120000_drop_orders/up.sql", "DROP TABLE IF EXISTS orders;\n")
    report = project.lint()
    assert [(f.path, f.rule) for f in _without_lock_timeout(report)] == [
        ("migrations/20240102120000_drop_orders/up.sql", "drop-without-rollback")]


# --- ignores --------------------------------------------------------------------------------------

def test_ignore_on_the_statement_or_the_line_above(project):
    project.write("migrations/005_drop_legacy.sql", """
DROP TABLE IF EXISTS a; -- safemig:ignore drop-without-rollback -- archived to S3 in 2023
-- safemig:ignore drop-without-rollback, not-idempotent -- table was never used
DROP TABLE b;
DROP TABLE IF EXISTS c;
""")
    report = project.lint()
    assert [(f.rule, f.line) for f in _without_lock_timeout(report)] == [("drop-without-rollback", 5)]


def test_ignore_file_and_unused_and_reasonless_ignores(project):
    project.write("migrations/005_drop_legacy.sql", """-- safemig:ignore-file drop-without-rollback -- legacy tables, archived
DROP TABLE IF EXISTS a;
-- safemig:ignore json-column -- nothing to silence here
CREATE TABLE IF NOT EXISTS t (id bigint);
DROP TABLE IF EXISTS b; -- safemig:ignore not-idempotent
""")
    report = project.lint()
    assert [(f.rule, f.severity, f.line) for f in _without_lock_timeout(report)] == [
        ("unused-ignore", "warning", 3), ("invalid-ignore", "error", 5), ("unused-ignore", "warning", 5)]


# --- policy and house rules -----------------------------------------------------------------------

def test_policy_severity_override_off_and_path_exception(project):
    sql = "CREATE TABLE IF NOT EXISTS t (id serial, doc json);\n"
    project.write("migrations/005_create_t.sql", sql)
    project.write("migrations/006_create_u.sql", sql.replace(" t ", " u "))
    project.write("rules/policy.toml", """
[rules]
serial-column = "error"
json-column = "off"

[[exceptions]]
paths = ["migrations/006_*.sql"]
rules = ["serial-column"]
reason = "u is a staging table"
""")
    report = project.lint()
    assert [(f.path, f.rule, f.severity) for f in report.findings] == [("migrations/005_create_t.sql", "serial-column", "error")]


def test_lint_section_of_safemig_toml_and_bad_policies(project):
    project.write("migrations/005_create_t.sql", "CREATE TABLE IF NOT EXISTS t (doc json);\n")
    project.write("safemig.toml", 'migrations_dir = "migrations"\n[lint.rules]\njson-column = "error"\n')
    assert [f.severity for f in project.lint().findings] == ["error"]
    project.write("safemig.toml", 'migrations_dir = "migrations"\n[lint.rules]\njson-colum = "error"\n')
    with pytest.raises(ConfigError, match="unknown rule 'json-colum'") as exc:
        project.lint()
    assert "json-column" in exc.value.hint
    project.write("safemig.toml", 'migrations_dir = "migrations"\n[lint.rules]\njson-column = "fatal"\n')
    with pytest.raises(ConfigError, match="not error, warning or off"):
        project.lint()
    project.write("safemig.toml", 'migrations_dir = "migrations"\n[[lint.exceptions]]\npaths = ["x"]\nrules = ["json-column"]\n')
    with pytest.raises(ConfigError, match="reason is required"):
        project.lint()


def test_house_rule_can_use_sqlglots_ast(project):
    """``stmt.ast`` is sqlglot's expression (parsed on demand), ``None`` when it has none to offer."""
    project.write("rules/policy.toml", "[rules]\n")
    project.write("rules/no_select_star.py", '''"""Views list their columns.

Why:
    A view over SELECT * freezes the column list at creation and surprises later readers.

Bad:
    CREATE OR REPLACE VIEW v AS SELECT * FROM t;

Good:
    CREATE OR REPLACE VIEW v AS SELECT id FROM t;
"""
from sqlglot import exp

ID = "no-select-star"
SEVERITY = "error"

def check(file):
    for stmt in file.valid_statements:
        if stmt.node_type == "ViewStmt" and stmt.ast is not None and any(stmt.ast.find_all(exp.Star)):
            yield file.violation(stmt, "SELECT * in a view", "list the columns")
''')
    project.write("migrations/005_views.sql", "CREATE OR REPLACE VIEW v AS SELECT * FROM t;\n"
                                              "CREATE OR REPLACE VIEW w AS SELECT id, '*' AS star FROM t;\n")
    (finding,) = rules_of(project.lint(), "no-select-star")
    assert (finding.line, finding.statement) == (1, "CREATE OR REPLACE VIEW v AS SELECT * FROM t")


def test_house_rule_loaded_through_the_same_interface(project):
    project.write("migrations/005_create_t.sql", "CREATE TABLE IF NOT EXISTS t (id bigint);\n")
    project.write("rules/not_a_rule.py", "raise SystemExit('an unrelated script must not run')\n")
    assert project.lint().findings == []  # no policy file, no house_rules setting: rules/ is not code to run
    (project.root / "rules/not_a_rule.py").unlink()
    project.write("rules/policy.toml", "[rules]\n")
    project.write("rules/no_table_t.py", '''"""Table t is reserved.

Why:
    Because.

Bad:
    CREATE TABLE IF NOT EXISTS t (id bigint);

Good:
    CREATE TABLE IF NOT EXISTS u (id bigint);
"""
ID = "no-table-t"
SEVERITY = "warning"

def check(file):
    for stmt in file.valid_statements:
        if stmt.node_type == "CreateStmt" and stmt.node["relation"]["relname"] == "t":
            yield file.violation(stmt, "table t is reserved", "call it u")
''')
    (finding,) = project.lint().findings
    assert (finding.rule, finding.severity, finding.hint) == ("no-table-t", "warning", "call it u")
    project.write("rules/no_table_t.py", (project.root / "rules/no_table_t.py").read_text().replace(
        'stmt.node["relation"]["relname"] == "t"', 'stmt.node["nope"]'))
    with pytest.raises(ConfigError, match=r"house rule no-table-t .* crashed on migrations/005_create_t.sql: KeyError"):
        project.lint()
    project.write("rules/broken.py", "ID = 'broken'\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="broken.py failed to load: RuntimeError: boom"):
        project.lint()


_KINDS_RULE = '''"""Every index is reported.

Why:
    Because.

Bad:
    CREATE INDEX IF NOT EXISTS i ON t (id);

Good:
    CREATE TABLE IF NOT EXISTS u (id bigint);
"""
ID = "every-index"
SEVERITY = "warning"
KINDS = KINDS_VALUE

def check(file):
    for stmt in file.valid_statements:
        if stmt.node_type != "IndexStmt":
            raise AssertionError("run on a file without an index")
        yield file.violation(stmt, "an index", "none")
'''


def test_a_rule_with_kinds_runs_only_on_files_with_such_a_statement(project):
    project.write("rules/policy.toml", "[rules]\n")
    project.write("rules/every_index.py", _KINDS_RULE.replace("KINDS_VALUE", '{"IndexStmt"}'))
    project.write("migrations/005_create_t.sql", "CREATE TABLE IF NOT EXISTS t (id bigint);\n")
    assert project.lint().findings == []  # not run at all: its check would raise on the CREATE TABLE
    project.write("migrations/006_index_t.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (id);\n")
    (finding,) = [f for f in project.lint().findings if f.rule == "every-index"]
    assert finding.path.endswith("006_index_t.sql")
    project.write("rules/every_index.py", _KINDS_RULE.replace("KINDS_VALUE", '"IndexStmt"'))
    with pytest.raises(ConfigError, match="every_index.py: KINDS must be a set of node type names"):
        project.lint()


def test_missing_path_is_a_usage_error(project):
    with pytest.raises(UsageError, match="no such file"):
        project.lint("migrations/404_missing.sql")


# --- cache and parallel runs ----------------------------------------------------------------------

def test_cache_hit_skips_parsing_and_a_change_invalidates_it(project, monkeypatch):
    project.write("migrations/005_drop_legacy.sql", "DROP TABLE IF EXISTS legacy;\n")
    first = project.lint(use_cache=True)
    assert _ids(first) == ["drop-without-rollback", "missing-lock-timeout"]

    import safemig.lint.parse as parse

    def refuse(text):
        raise AssertionError("parsed although cached")

    monkeypatch.setattr(parse, "parse_sql", refuse)
    assert project.lint(use_cache=True).findings == first.findings
    project.write("rollbacks/005_restore_legacy.sql", "CREATE TABLE IF NOT EXISTS legacy (id bigint);\n")
    with pytest.raises(AssertionError, match="parsed although cached"):
        project.lint(use_cache=True)  # a new rollback script changes the key
    monkeypatch.undo()
    assert _ids(project.lint(use_cache=True)) == ["missing-lock-timeout"]


def test_cache_forgets_entries_a_month_old_when_it_rewrites_their_bucket(project, monkeypatch):
    import json
    import time

    from safemig.lint import cache as cache_mod

    for i in range(1, 41):
        project.write(f"migrations/{i:03d}_change_table_{i}.sql", f"ALTER TABLE orders RENAME c{i} TO d{i};\n")
    project.lint(use_cache=True)
    def stored() -> list[set[str]]:
        return [set(json.loads(b.read_text())) for b in sorted((project.root / cache_mod.CACHE_DIR).glob("*.json"))]

    before = set().union(*stored())
    assert len(before) == 40
    now = time.time()
    monkeypatch.setattr(cache_mod.time, "time", lambda: now + 31 * 86400)
    for i in range(1, 41):  # every file edited a month later: every bucket is rewritten
        project.write(f"migrations/{i:03d}_change_table_{i}.sql", f"ALTER TABLE orders RENAME c{i} TO e{i};\n")
    project.lint(use_cache=True)
    rewritten = [keys for keys in stored() if keys - before]
    assert sum(len(keys) for keys in rewritten) == 40  # every new entry, in the buckets written this run
    assert not set().union(*rewritten) & before  # where a bucket was rewritten, the month-old entries are gone


def test_a_corrupt_cache_entry_is_a_miss_not_a_crash(project):
    import json

    from safemig.lint import cache as cache_mod

    project.write("migrations/005_rename.sql", "ALTER TABLE orders RENAME c TO d;\n")
    first = project.lint(use_cache=True)
    for bucket in (project.root / cache_mod.CACHE_DIR).glob("*.json"):
        entries = json.loads(bucket.read_text())
        bucket.write_text(json.dumps({k: {"day": None, "findings": 5} for k in entries} | {"old": [1, 2]}))
    assert project.lint(use_cache=True).findings == first.findings  # misses: linted again, buckets rewritten
    project.write("migrations/005_rename.sql", "ALTER TABLE orders RENAME c TO e;\n")
    (rename,) = rules_of(project.lint(use_cache=True), "rename")
    assert "to e" in rename.message


@pytest.mark.parametrize("files", [3, 40])  # serial and parallel
def test_a_first_run_fills_the_cache_that_the_next_run_hits(project, monkeypatch, files):
    """A BOM and non-ASCII text included; nothing is parsed on the second run."""
    from safemig.lint import cache as cache_mod
    import safemig.lint.parse as parse

    for i in range(1, files + 1):
        project.write(f"migrations/{i:03d}_change_table_{i}.sql", f"\ufeff-- \u00e9\nALTER TABLE orders RENAME c{i} TO d{i};\n")
    project.write("rollbacks/001_rollback_change_table_1.sql", "ALTER TABLE orders RENAME d1 TO c1;\n")
    assert not (project.root / cache_mod.CACHE_DIR).exists()
    first = project.lint(use_cache=True)

    def refuse(text):
        raise AssertionError("parsed although cached")

    monkeypatch.setattr(parse, "parse_sql", refuse)
    assert project.lint(use_cache=True).findings == first.findings


def test_partly_cached_parallel_run_keeps_each_files_findings(project):
    """Files stream into the workers as the cache misses them: hits and misses interleave."""
    for i in range(1, 61):
        project.write(f"migrations/{i:03d}_change_table_{i}.sql", f"ALTER TABLE orders RENAME c{i} TO d{i};\n")
    first = project.lint(use_cache=True)
    for i in range(1, 61, 2):  # every other file changes: 30 misses between 30 hits
        project.write(f"migrations/{i:03d}_change_table_{i}.sql", f"ALTER TABLE orders RENAME c{i} TO e{i};\nSELEC {i};\n")
    second = project.lint(use_cache=True)
    assert second.findings == project.lint(use_cache=False).findings
    renames = {f.path: f.message for f in second.findings if f.rule == "rename"}
    assert len(renames) == 60 and all(f" to {'e' if i % 2 else 'd'}{i}" in renames[f"migrations/{i:03d}_change_table_{i}.sql"]
                                      for i in range(1, 61))
    assert len([f for f in second.findings if f.rule == "syntax-error"]) == 30
    assert [f for f in first.findings if f.path.startswith("migrations/002_")] == \
           [f for f in second.findings if f.path.startswith("migrations/002_")]


def test_parallel_run_matches_serial_run(project):
    for i in range(1, 41):
        project.write(f"migrations/{i:03d}_change_table_{i}.sql",
                      f"CREATE TABLE t{i} (id serial);\nALTER TABLE orders RENAME c{i} TO d{i};\nSELEC {i};\n")
    from safemig.lint import runner

    parallel = project.lint()
    serial = [f for p in sorted((project.root / "migrations").glob("*.sql")) for f in project.lint(str(p.relative_to(project.root))).findings]
    assert len(parallel.findings) == 40 * 5
    assert sorted(parallel.findings, key=lambda f: f.sort_key) == sorted(serial, key=lambda f: f.sort_key)
    assert runner.PARALLEL_THRESHOLD < 40


def test_non_ascii_files_map_statements_to_the_right_nodes(project):
    # PostgreSQL reports offsets in UTF-8 bytes; the statements must still line up with their nodes.
    project.write("migrations/005_add_labels.sql", """-- Étiquettes für Bestellungen ✓
SET lock_timeout = '5s';
COMMENT ON TABLE orders IS 'Größe: 「大」';
ALTER TABLE orders RENAME "Größe" TO size;
CREATE TABLE IF NOT EXISTS étiquettes (id bigint, données json);
""")
    report = project.lint()
    assert [(f.rule, f.line) for f in report.findings] == [("rename", 4), ("json-column", 5)]
    assert "column orders.Größe to size" in report.findings[0].message


def test_tenant_house_rule_on_new_tables(house_project):
    house_project.write("migrations/005_create_stock.sql", """
CREATE TABLE IF NOT EXISTS stock (id uuid PRIMARY KEY, tenant_id uuid, qty int);
CREATE TABLE IF NOT EXISTS stock_2026 PARTITION OF stock FOR VALUES IN (2026);
""")
    messages = [f.message for f in house_project.lint().findings if f.rule == "tenant-table"]
    assert messages == ["table stock has no tenant_id UUID NOT NULL column",
                        "table stock is created without row-level security",
                        "table stock has no tenant policy in this migration"]


def test_tenant_house_rule_reads_names_and_policies_from_the_tree(house_project):
    house_project.write("migrations/005_create_stock.sql", """
CREATE TABLE IF NOT EXISTS "Stock" (id uuid PRIMARY KEY, tenant_id uuid NOT NULL);
ALTER TABLE stock ENABLE ROW LEVEL SECURITY;  -- another table: "Stock" is not stock
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE policyname = 'p') THEN
        CREATE POLICY p ON "Stock" USING (true);  -- tenant_id only in this comment
    END IF;
END $$;
""")
    messages = [f.message for f in house_project.lint().findings if f.rule == "tenant-table"]
    assert messages == ["table Stock is created without row-level security",
                        "table Stock has no tenant policy in this migration"]
    house_project.write("migrations/005_create_stock.sql", """
CREATE TABLE IF NOT EXISTS "Stock" (id uuid PRIMARY KEY, tenant_id uuid NOT NULL);
ALTER TABLE "Stock" ENABLE ROW LEVEL SECURITY;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE policyname = 'p') THEN
        CREATE POLICY p ON "Stock" USING (true) WITH CHECK ("Stock".tenant_id = current_tenant_id());
    END IF;
END $$;
""")
    assert [f for f in house_project.lint().findings if f.rule == "tenant-table"] == []


def test_repository_samples_pass_the_tenant_house_rule(house_project):
    for path in sorted((REPO_ROOT / "docker" / "migrations").glob("*.sql")):
        house_project.write(f"migrations/{path.name}", path.read_text(encoding="utf-8"))
    assert [f for f in house_project.lint().findings if f.rule == "tenant-table"] == []


def test_hints_quote_the_users_column_definition_in_multi_statement_files(project):
    project.write("migrations/005_add_amounts.sql", """-- Beträge ✓
SET lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN amount numeric(12, 2), ADD COLUMN note text NOT NULL;
ALTER TABLE "Bücher" ADD COLUMN IF NOT EXISTS "Preis" numeric(10, 2) NOT NULL;
""")
    hints = [f.hint for f in project.lint().findings]
    assert "write ALTER TABLE orders ADD COLUMN IF NOT EXISTS amount numeric(12, 2) ..." in hints
    assert "write ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text ..." in hints
    assert any('ALTER TABLE "Bücher" ADD COLUMN IF NOT EXISTS "Preis" numeric(10, 2) NOT NULL DEFAULT <value>' in h for h in hints)


def test_rollback_script_that_is_not_utf8_is_a_named_input_error(project):
    project.write("migrations/005_drop_legacy.sql", "DROP TABLE IF EXISTS legacy;\n")
    (project.root / "rollbacks/005_restore_legacy.sql").write_bytes(b"-- ok\nCREATE TABLE legacy (name text DEFAULT '\xe9');\n")
    from safemig.errors import MigrationFileError

    with pytest.raises(MigrationFileError, match=r"005_restore_legacy.sql:2: not valid UTF-8 at byte offset 46"):
        project.lint()


def test_parallel_run_with_other_threads_alive_uses_fresh_workers(project):
    import threading

    for i in range(1, 31):
        project.write(f"migrations/{i:03d}_rename_column_{i}.sql", f"ALTER TABLE orders RENAME c{i} TO d{i};\n")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        report = project.lint()
    finally:
        stop.set()
        thread.join()
    assert len([f for f in report.findings if f.rule == "rename"]) == 30


def test_cache_notices_an_edited_earlier_migration(project):
    """change-column-type reads the column's type from an earlier migration: editing that one re-lints this one."""
    lock = "SET lock_timeout = '2s';\n"
    project.write("migrations/004_create_tokens.sql", lock + "CREATE TABLE IF NOT EXISTS tokens (id bigint, sig varchar(10));\n")
    project.write("migrations/005_widen.sql", lock + "ALTER TABLE tokens ALTER COLUMN sig TYPE varchar(20);\n")
    assert rules_of(project.lint(use_cache=True), "change-column-type") == []  # varchar(10) -> varchar(20): free
    project.write("migrations/004_create_tokens.sql", lock + "CREATE TABLE IF NOT EXISTS tokens (id bigint, sig integer);\n")
    (finding,) = rules_of(project.lint(use_cache=True), "change-column-type")  # integer -> varchar: a rewrite
    assert finding.path == "migrations/005_widen.sql"
    assert rules_of(project.lint("migrations/005_widen.sql", use_cache=True), "change-column-type") == [finding]
    project.write("migrations/004_create_tokens.sql", lock + "CREATE TABLE IF NOT EXISTS tokens (id bigint, sig varchar(10));\n")
    assert rules_of(project.lint("migrations/005_widen.sql", use_cache=True), "change-column-type") == []


def test_cache_notices_an_edited_earlier_diesel_migration_and_its_rollback(project):
    """Diesel layout, linted file by file as the hook does: the earlier up.sql and this one's down.sql both count."""
    lock = "SET lock_timeout = '2s';\n"
    project.write("migrations/2024-01-01-000000_create/up.sql", lock + "CREATE TABLE IF NOT EXISTS t (id bigint, c varchar(10));\n")
    project.write("migrations/2024-01-01-000000_create/down.sql", "DROP TABLE IF EXISTS t;\n")
    later = "migrations/2024-02-01-000000_alter/up.sql"
    project.write(later, lock + "ALTER TABLE t ALTER COLUMN c TYPE text;\nALTER TABLE t DROP COLUMN IF EXISTS old;\n")
    project.write("migrations/2024-02-01-000000_alter/down.sql", "")

    def ids():
        return sorted(f.rule for f in project.lint(later, use_cache=True).findings if f.path == later)

    assert ids() == ["drop-without-rollback", "rollback-invalid"]  # empty down.sql
    project.write("migrations/2024-02-01-000000_alter/down.sql", "ALTER TABLE t ADD COLUMN IF NOT EXISTS old text;\n")
    assert ids() == []
    project.write("migrations/2024-01-01-000000_create/up.sql", lock + "CREATE TABLE IF NOT EXISTS t (id bigint, c bytea);\n")
    assert ids() == ["change-column-type"]


def test_cache_notices_a_second_rollback_script_for_the_version(project):
    project.write("migrations/005_drop_legacy.sql", "SET lock_timeout = '2s';\nDROP TABLE IF EXISTS legacy;\n")
    project.write("rollbacks/005_restore_legacy.sql", "CREATE TABLE IF NOT EXISTS legacy (id bigint);\n")
    project.write("rollbacks/005_restore_legacy_b.sql", "CREATE TABLE IF NOT EXISTS legacy (id bigint);\n")
    (first,) = rules_of(project.lint("migrations/005_drop_legacy.sql", use_cache=True), "drop-without-rollback")
    assert "2 rollback scripts" in first.message
    project.write("rollbacks/005_restore_legacy_c.sql", "CREATE TABLE IF NOT EXISTS legacy (id bigint);\n")
    (second,) = rules_of(project.lint("migrations/005_drop_legacy.sql", use_cache=True), "drop-without-rollback")
    assert "3 rollback scripts" in second.message


@pytest.mark.parametrize("text", [
    "create table users (id bigint, \"Name\" text); -- 1abc $1x a$b x.y_z 123 4e5 é-word ünï",
    "alter table t add column c int;\ninsert into t values ('it''s', $$body$$, e'\\n', 1.5e3);",
    "select $1, $$x$$; _under __dunder a1 1a 9_9 $ $$ $a",
])
def test_history_word_index_holds_every_word_the_regex_finds(text):
    from safemig.lint import history

    assert history._words(text) >= set(history._WORD.findall(text))


def test_cache_rechecks_history_only_for_files_that_read_it_also_from_parallel_workers(project, monkeypatch):
    """30 files (the parallel path): 030 looks back at 001's column type; the others never look back."""
    import safemig.lint.parse as parse
    from safemig.lint import runner

    lock = "SET lock_timeout = '2s';\n"
    project.write("migrations/001_create.sql", lock + "CREATE TABLE IF NOT EXISTS t (id bigint, c varchar(10));\n")
    for i in range(2, 30):
        project.write(f"migrations/{i:03d}_rename_{i}.sql", lock + f"ALTER TABLE orders RENAME c{i} TO d{i};\n")
    project.write("migrations/030_widen.sql", lock + "ALTER TABLE t ALTER COLUMN c TYPE varchar(20);\n")
    assert runner.PARALLEL_THRESHOLD < 30
    assert rules_of(project.lint(use_cache=True), "change-column-type") == []
    project.write("migrations/001_create.sql", lock + "CREATE TABLE IF NOT EXISTS t (id bigint, c integer);\n")
    parsed = []
    real = parse.parse_sql
    monkeypatch.setattr(parse, "parse_sql", lambda text: parsed.append(text) or real(text))
    (finding,) = rules_of(project.lint(use_cache=True), "change-column-type")
    assert finding.path == "migrations/030_widen.sql"
    # re-linted: 001 (edited) and 030 (it read 001); 002-029 answered from the cache
    assert sorted(t.split("\n")[1][:30] for t in parsed) == ["ALTER TABLE t ALTER COLUMN c T", "CREATE TABLE IF NOT EXISTS t ("]
