"""Issue 12: real statements of each class, judged as PostgreSQL would (written here after statements of
the 20-project corpus, not copied files): no crash, fewer false positives, fewer misses, target version,
Diesel, the house-rule API, hints, the hook in real repositories, SARIF."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lint.conftest import REPO_ROOT, Project, rules_of

LOCK = "SET lock_timeout = '5s';\n"


def _rules(report, *ignore: str) -> list[tuple[str, int]]:
    return [(f.rule, f.line) for f in report.findings if f.rule not in ignore]


# --- 1. the crash --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["notes.txt", "01_add_profiles_not_valid_check.sql.postgres"])
def test_a_file_named_explicitly_is_linted_whatever_its_suffix(project, cli, name):
    project.write(name, "ALTER TABLE profiles ALTER COLUMN full_user_id SET NOT NULL;\n")
    result = cli("lint", "--format", "json", name, cwd=project.root)
    assert result.exit_code == 1, result.output  # findings, not exit 70
    found = {f["rule"] for f in json.loads(result.stdout)}
    assert {"set-not-null", "file-naming"} <= found


# --- 2. false positives --------------------------------------------------------------------------

def test_set_not_null_after_validating_a_not_null_check_is_free(project):
    # hatchet's pattern: CHECK ... NOT VALID in one migration, VALIDATE then SET NOT NULL in the next
    project.write("migrations/004_add_external_id_check.sql", LOCK + (
        "ALTER TABLE v1_payload DROP CONSTRAINT IF EXISTS v1_payload_external_id_not_null,\n"
        "    ADD CONSTRAINT v1_payload_external_id_not_null CHECK (external_id IS NOT NULL) NOT VALID;\n"))
    project.write("migrations/005_validate_external_id.sql", LOCK + (
        "ALTER TABLE v1_payload VALIDATE CONSTRAINT v1_payload_external_id_not_null;\n"
        "ALTER TABLE v1_payload ALTER COLUMN external_id SET NOT NULL;\n"
        "ALTER TABLE v1_payload ALTER COLUMN tenant_id SET NOT NULL;\n"))
    assert _rules(project.lint("migrations/005_validate_external_id.sql")) == [("set-not-null", 4)]


def test_set_not_null_after_a_check_on_another_column_still_scans(project):
    project.write("migrations/005_validate.sql", LOCK + (
        "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_a_nn, ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT t_a_nn;\n"
        "ALTER TABLE t ALTER COLUMN b SET NOT NULL;\n"))
    assert ("set-not-null", 4) in _rules(project.lint())


@pytest.mark.parametrize("column", [
    "refresh_token_id BIGINT REFERENCES refresh_tokens (id) ON DELETE CASCADE",
    "assistant_id UUID REFERENCES assistants(id) ON DELETE CASCADE DEFAULT NULL",
])
def test_a_foreign_key_on_a_new_nullable_column_validates_nothing(project, column):
    project.write("migrations/005_add_ref.sql", LOCK + f"ALTER TABLE sessions ADD COLUMN IF NOT EXISTS {column};\n")
    assert rules_of(project.lint(), "constraint-without-not-valid") == []


def test_a_foreign_key_on_a_new_column_with_a_default_is_validated(project):
    project.write("migrations/005_add_ref.sql",
                  LOCK + "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS org_id bigint DEFAULT 1 REFERENCES orgs (id);\n")
    assert [f.line for f in rules_of(project.lint(), "constraint-without-not-valid")] == [2]


def test_adding_a_serial_primary_key_reports_the_rewrite_not_a_missing_default(project):
    project.write("migrations/005_add_id.sql", LOCK + "ALTER TABLE local_media ADD COLUMN IF NOT EXISTS id serial PRIMARY KEY;\n")
    report = project.lint()
    assert rules_of(report, "not-null-column-without-default") == []
    assert [f.line for f in rules_of(report, "volatile-default")] == [2]


@pytest.mark.parametrize("default", ["statement_timestamp()", "txid_current()", "now()", "CURRENT_TIMESTAMP",
                                     "(now() AT TIME ZONE 'utc')", "transaction_timestamp()", "current_setting('app.x')"])
def test_stable_defaults_are_not_volatile(project, default):
    project.write("migrations/005_add_ts.sql",
                  LOCK + f"ALTER TABLE events ADD COLUMN IF NOT EXISTS seen_at timestamptz DEFAULT {default};\n")
    assert rules_of(project.lint(), "volatile-default") == []


@pytest.mark.parametrize("old, new", [
    ("varchar(64)", "varchar(255)"), ("varchar(64)", "text"), ("character varying(36)", "varchar"),
    ("numeric(10, 2)", "numeric(12, 2)"), ("numeric(10, 2)", "numeric"), ("cidr", "inet"), ("text", "varchar"),
    ("timestamp(3)", "timestamp(6)"), ("bit(8)", "varbit"),
])
def test_binary_coercible_type_changes_rewrite_nothing(project, old, new):
    project.write("migrations/004_create_tokens.sql", f"CREATE TABLE IF NOT EXISTS tokens (id bigint, signature {old});\n")
    project.write("migrations/005_widen_signature.sql", LOCK + f"ALTER TABLE tokens ALTER COLUMN signature TYPE {new};\n")
    assert rules_of(project.lint("migrations/005_widen_signature.sql"), "change-column-type") == []


@pytest.mark.parametrize("old, new", [
    ("varchar(255)", "varchar(64)"), ("text", "varchar(768)"), ("numeric(10, 2)", "numeric(12, 4)"),
    ("integer", "bigint"), ("text", "integer"), ("inet", "cidr"), ("varchar(10)", "char(10)"),
])
def test_other_type_changes_are_rewrites(project, old, new):
    project.write("migrations/004_create_tokens.sql", f"CREATE TABLE IF NOT EXISTS tokens (id bigint, signature {old});\n")
    project.write("migrations/005_change_signature.sql", LOCK + f"ALTER TABLE tokens ALTER COLUMN signature TYPE {new};\n")
    assert [f.line for f in rules_of(project.lint("migrations/005_change_signature.sql"), "change-column-type")] == [2]


def test_a_type_change_with_using_or_an_unknown_column_is_a_rewrite(project):
    project.write("migrations/004_create_tokens.sql", "CREATE TABLE IF NOT EXISTS tokens (id bigint, sig varchar(10));\n")
    project.write("migrations/005_change.sql", LOCK + "ALTER TABLE tokens ALTER COLUMN sig TYPE text USING sig::text;\n"
                  "ALTER TABLE tokens ALTER COLUMN other TYPE text;\n")
    assert [f.line for f in rules_of(project.lint("migrations/005_change.sql"), "change-column-type")] == [2, 3]


def test_a_later_type_change_is_judged_from_the_latest_type(project):
    project.write("migrations/003_create.sql", "CREATE TABLE IF NOT EXISTS tokens (id bigint, sig integer);\n")
    project.write("migrations/004_retype.sql", LOCK + "ALTER TABLE tokens ALTER COLUMN sig TYPE varchar(10) USING sig::text;\n")
    project.write("migrations/005_widen.sql", LOCK + "ALTER TABLE tokens ALTER COLUMN sig TYPE varchar(20);\n")
    assert rules_of(project.lint("migrations/005_widen.sql"), "change-column-type") == []


@pytest.mark.parametrize("sql, rule", [
    ("REINDEX (CONCURRENTLY false) TABLE events;", "concurrently-in-transaction"),
    ("VACUUM (FULL false) events;", "vacuum-full"),
    ("VACUUM (FULL off, ANALYZE) events;", "vacuum-full"),
])
def test_option_values_are_read(project, sql, rule):
    project.write("migrations/005_maintain.sql", "-- no-transaction\n" + LOCK + sql + "\n")
    assert rules_of(project.lint(), rule) == []


def test_reindex_concurrently_false_is_a_plain_reindex(project):
    project.write("migrations/005_maintain.sql", LOCK + "REINDEX (CONCURRENTLY false) TABLE events;\n")
    (finding,) = rules_of(project.lint(), "reindex-without-concurrently")
    assert finding.hint.endswith("REINDEX TABLE CONCURRENTLY events;")


def test_missing_lock_timeout_is_skipped_when_safemig_applies_with_the_envs_lock_timeout(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    project = Project(tmp_path, '\n[envs.prod]\ndatabase_url = "postgresql://x@127.0.0.1:1/x"\nlock_timeout = "3s"\n'
                                '\n[envs.raw]\ndatabase_url = "postgresql://x@127.0.0.1:1/x"\nlock_timeout = "0"\n')
    project.write("migrations/005_add_note.sql", "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n")
    plain = cli("lint", "--format", "json", cwd=tmp_path)
    assert [f["rule"] for f in json.loads(plain.stdout)] == ["missing-lock-timeout"]
    with_env = cli("lint", "--format", "json", "--env", "prod", cwd=tmp_path)
    assert json.loads(with_env.stdout) == []
    assert "missing-lock-timeout not checked: safemig applies these migrations to env prod with lock_timeout = 3s" \
        in with_env.stderr
    disabled = cli("lint", "--format", "json", "--env", "raw", cwd=tmp_path)  # lock_timeout = "0": none is set
    assert [f["rule"] for f in json.loads(disabled.stdout)] == ["missing-lock-timeout"]


def test_missing_lock_timeout_calls_an_index_an_index(project):
    project.write("migrations/005_drop_index.sql", "DROP INDEX IF EXISTS idx_events_room;\n")
    (finding,) = rules_of(project.lint(), "missing-lock-timeout")
    assert "ACCESS EXCLUSIVE lock on index idx_events_room (and its table)" in finding.message
    assert "traffic to idx_events_room" not in finding.message


# --- 3. misses ------------------------------------------------------------------------------------

def test_a_user_function_default_is_volatile_and_says_why(project):
    project.write("migrations/005_add_code.sql",
                  LOCK + "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS code text DEFAULT generate_unique_changeme();\n")
    (finding,) = rules_of(project.lint(), "volatile-default")
    assert "generate_unique_changeme() is not a PostgreSQL 15 built-in" in finding.message
    assert "default for a function is VOLATILE" in finding.message


def test_a_function_created_stable_in_the_same_migration_is_not_volatile(project):
    project.write("migrations/005_add_code.sql", LOCK + """
CREATE OR REPLACE FUNCTION default_region() RETURNS text LANGUAGE sql STABLE AS $$ SELECT 'eu' $$;
CREATE OR REPLACE FUNCTION new_code() RETURNS text LANGUAGE sql AS $$ SELECT md5(random()::text) $$;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS region text DEFAULT default_region();
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS code text DEFAULT new_code();
""")
    (finding,) = rules_of(project.lint(), "volatile-default")
    assert finding.line == 6 and "declared VOLATILE" in finding.message


def test_volatility_comes_from_the_shipped_catalog():
    from safemig.lint import catalog

    assert catalog.volatility("statement_timestamp", 15) == "s"
    assert catalog.volatility("gen_random_uuid", 15) == "v"
    assert catalog.volatility("uuid_generate_v4", 15) == "v"  # uuid-ossp, created by the generator
    assert catalog.volatility("lower", 15) == "i"
    assert catalog.volatility("generate_unique_changeme", 15) is None
    assert catalog.generated_majors() == list(catalog.SUPPORTED_MAJORS)  # generated from real 14-18 servers
    assert catalog.volatility("uuidv7", 18) == "v" and catalog.volatility("uuidv7", 17) is None


def test_detach_partition_concurrently_in_a_transaction(project):
    project.write("migrations/005_detach.sql", LOCK + "ALTER TABLE v1_task_events DETACH PARTITION v1_task_events_2024 CONCURRENTLY;\n")
    assert [f.line for f in rules_of(project.lint(), "concurrently-in-transaction")] == [2]
    project.write("migrations/005_detach.sql", "-- no-transaction\n" + LOCK
                  + "ALTER TABLE v1_task_events DETACH PARTITION v1_task_events_2024 CONCURRENTLY;\n")
    assert rules_of(project.lint(), "concurrently-in-transaction") == []


def test_alter_domain_add_constraint_validates_every_column(project):
    project.write("migrations/005_domain.sql", LOCK + "ALTER DOMAIN email ADD CONSTRAINT email_check CHECK (VALUE ~ '@');\n")
    (finding,) = rules_of(project.lint(), "constraint-without-not-valid")
    assert finding.hint.startswith("ALTER DOMAIN email ADD CONSTRAINT email_check CHECK (VALUE ~ '@') NOT VALID;")
    project.write("migrations/005_domain.sql", LOCK + "ALTER DOMAIN email ADD CONSTRAINT email_check CHECK (VALUE ~ '@') NOT VALID;\n")
    assert rules_of(project.lint(), "constraint-without-not-valid") == []


@pytest.mark.parametrize("sql, what", [
    ("ALTER SCHEMA storage RENAME TO storage_v1;", "renaming schema storage"),
    ("ALTER TYPE factor_type RENAME TO auth_factor_type;", "renaming type factor_type"),
    ("ALTER TYPE aal_level RENAME VALUE 'aal1' TO 'level1';", "renaming value 'aal1' of enum aal_level"),
    ("ALTER FUNCTION storage.search(text, text) RENAME TO search_v1;", "renaming function storage.search"),
    ("ALTER SEQUENCE users_id_seq RENAME TO accounts_id_seq;", "renaming sequence users_id_seq"),
])
def test_renames_of_other_objects_are_reported(project, sql, what):
    project.write("migrations/005_rename.sql", LOCK + sql + "\n")
    (finding,) = rules_of(project.lint(), "rename")
    assert what in finding.message


def test_primary_key_using_index_on_a_nullable_column_scans(project):
    project.write("migrations/004_create.sql", "CREATE TABLE IF NOT EXISTS event_push (stream_id bigint, room text NOT NULL);\n"
                  "-- no-transaction\n")
    project.write("migrations/005_index.sql", "-- no-transaction\n" + LOCK + (
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS event_push_stream_idx ON event_push (stream_id);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS event_push_room_idx ON event_push (room);\n"))
    project.write("migrations/006_pk.sql", LOCK + (
        "ALTER TABLE event_push DROP CONSTRAINT IF EXISTS event_push_pkey,\n"
        "    ADD CONSTRAINT event_push_pkey PRIMARY KEY USING INDEX event_push_stream_idx;\n"))
    (finding,) = rules_of(project.lint("migrations/006_pk.sql"), "set-not-null")
    assert "makes stream_id NOT NULL" in finding.message
    project.write("migrations/006_pk.sql", LOCK + (
        "ALTER TABLE event_push DROP CONSTRAINT IF EXISTS event_push_pkey,\n"
        "    ADD CONSTRAINT event_push_pkey PRIMARY KEY USING INDEX event_push_room_idx;\n"))
    assert rules_of(project.lint("migrations/006_pk.sql"), "set-not-null") == []


@pytest.mark.parametrize("sql, mode", [
    ("CREATE INDEX IF NOT EXISTS idx_events_room ON events (room_id);", "a SHARE lock on events"),
    ("ALTER TABLE events ADD CONSTRAINT events_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) NOT VALID;",
     "a SHARE ROW EXCLUSIVE lock on events"),
    ("CREATE OR REPLACE TRIGGER events_touch BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION touch();",
     "a SHARE ROW EXCLUSIVE lock on events"),
])
def test_share_locks_without_lock_timeout(project, sql, mode):
    project.write("migrations/005_lock.sql", sql + "\n")
    (finding,) = rules_of(project.lint(), "missing-lock-timeout")
    assert mode in finding.message and "block every write" in finding.message


def test_add_constraint_is_not_idempotent_unless_dropped_first(project):
    project.write("migrations/005_fk.sql", LOCK + (
        "ALTER TABLE events ADD CONSTRAINT events_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) NOT VALID;\n"
        "ALTER TABLE events DROP CONSTRAINT IF EXISTS events_kind_check,\n"
        "    ADD CONSTRAINT events_kind_check CHECK (kind <> '') NOT VALID;\n"
        "ALTER TABLE events DROP CONSTRAINT IF EXISTS events_x_check;\n"
        "ALTER TABLE events ADD CONSTRAINT events_x_check CHECK (x > 0) NOT VALID;\n"))
    report = project.lint()
    assert [f.line for f in rules_of(report, "not-idempotent")] == [2]
    assert rules_of(report, "drop-without-rollback") == []  # dropped and re-added: nothing is destroyed


def test_temp_table_on_commit_drop_is_idempotent(project):
    project.write("migrations/005_backfill.sql", LOCK + (
        "CREATE TEMP TABLE tmp_ids (id bigint) ON COMMIT DROP;\nINSERT INTO tmp_ids SELECT id FROM users WHERE x;\n"))
    assert rules_of(project.lint(), "not-idempotent") == []


# --- 4. the target version -----------------------------------------------------------------------

def _versioned(tmp_path, monkeypatch, version: int | None) -> Project:
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path, f"\n[lint]\npg_version = {version}\n" if version else "")


@pytest.mark.parametrize("sql, needs", [
    ("ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null NOT NULL currency;", 18),
    ("ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_cents bigint GENERATED ALWAYS AS (total * 100) VIRTUAL;", 18),
    ("ALTER TABLE orders ALTER COLUMN total_cents SET EXPRESSION AS (total * 1000);", 17),
    ("MERGE INTO stock s USING moves m ON s.id = m.id WHEN MATCHED THEN DELETE;", 15),
    ("CREATE UNIQUE INDEX IF NOT EXISTS users_email ON users (email) NULLS NOT DISTINCT;", 15),
    ("SELECT json_object('a': 1);", 16),
])
def test_syntax_the_target_cannot_run_is_an_error(tmp_path, monkeypatch, sql, needs):
    for version in (14, 15, 16, 17, 18):
        project = _versioned(tmp_path, monkeypatch, version)
        project.write("migrations/005_change.sql", "-- no-transaction\n" + LOCK + sql + "\n")
        found = rules_of(project.lint(), "unsupported-syntax")
        assert bool(found) == (version < needs), (version, sql)
        if found:
            assert f"needs PostgreSQL {needs}" in found[0].message and found[0].severity == "error"


def test_default_target_is_documented_and_bad_versions_are_refused(tmp_path, monkeypatch):
    from safemig.errors import ConfigError
    from safemig.lint.catalog import DEFAULT_PG_VERSION

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pg_version` (default {DEFAULT_PG_VERSION}" in readme
    project = _versioned(tmp_path, monkeypatch, 12)
    with pytest.raises(ConfigError, match="pg_version = 12 is not a supported PostgreSQL major"):
        project.lint()


def test_advice_follows_the_version(tmp_path, monkeypatch):
    project = _versioned(tmp_path, monkeypatch, 18)
    project.write("migrations/005_change.sql", LOCK + """ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_cents bigint GENERATED ALWAYS AS (total * 100) STORED;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_mills bigint GENERATED ALWAYS AS (total * 1000) VIRTUAL;
""")
    report = project.lint()
    (set_not_null,) = rules_of(report, "set-not-null")
    assert "ADD CONSTRAINT orders_currency_not_null NOT NULL currency NOT VALID" in set_not_null.hint
    (stored,) = rules_of(report, "stored-generated-column")  # the virtual one adds without a rewrite
    assert stored.line == 3 and "drop STORED" in stored.hint
    project = _versioned(tmp_path, monkeypatch, 15)
    project.write("migrations/005_change.sql", LOCK + "ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;\n")
    (set_not_null,) = rules_of(project.lint(), "set-not-null")
    assert "CHECK (currency IS NOT NULL) NOT VALID" in set_not_null.hint


def test_set_expression_rewrites(tmp_path, monkeypatch):
    project = _versioned(tmp_path, monkeypatch, 17)
    project.write("migrations/005_change.sql", LOCK + "ALTER TABLE orders ALTER COLUMN total_cents SET EXPRESSION AS (total * 1000);\n")
    assert [f.line for f in rules_of(project.lint(), "table-rewrite")] == [2]


# --- 5. Diesel ------------------------------------------------------------------------------------

def test_diesel_directory_names_and_metadata(project):
    project.write("migrations/2024-01-01-000000_create_users/up.sql",
                  "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text);\n")
    project.write("migrations/2024-01-01-000000_create_users/down.sql", "DROP TABLE IF EXISTS users;\n")
    project.write("migrations/2024-02-01-120000_index_users/up.sql",
                  "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);\n")
    project.write("migrations/2024-02-01-120000_index_users/down.sql", "DROP INDEX CONCURRENTLY IF EXISTS users_email;\n")
    project.write("migrations/2024-02-01-120000_index_users/metadata.toml", "run_in_transaction = false\n")
    report = project.lint()
    assert rules_of(report, "file-naming") == []
    assert [f.path for f in rules_of(report, "concurrently-in-transaction")] == [
        "migrations/2024-02-01-120000_index_users/down.sql"]  # metadata.toml speaks for up.sql only
    project.write("migrations/2024-02-01-120000_index_users/metadata.toml", "run_in_transaction = true\n")
    assert "migrations/2024-02-01-120000_index_users/up.sql" in [
        f.path for f in rules_of(project.lint(use_cache=True), "concurrently-in-transaction")]


# --- 6. the house-rule API ------------------------------------------------------------------------

def test_rules_use_only_the_public_facts():
    from safemig.lint import facts

    sources = [*(REPO_ROOT / "safemig" / "lint" / "rules").glob("*.py"), *(REPO_ROOT / "rules").glob("*.py")]
    for source in sources:
        used = set(re.findall(r"\bfacts\.(\w+)", source.read_text(encoding="utf-8")))
        assert used <= set(facts.__all__), f"{source.name} uses {sorted(used - set(facts.__all__))}"
    assert all(hasattr(facts, name) for name in facts.__all__)


# --- 7. hints -------------------------------------------------------------------------------------

def test_drop_hint_names_the_stub_migrate_add_creates(project):
    from safemig.migrations.engine import rollback_file_name

    project.write("migrations/004_create_read_models.sql", "DROP TABLE IF EXISTS old_read_models;\n")
    (finding,) = rules_of(project.lint(), "drop-without-rollback")
    assert f"rollbacks/{rollback_file_name('004_create_read_models.sql')}" in finding.hint
    assert "rollbacks/004_rollback_read_models.sql" in finding.hint
    project.write("rollbacks/004_rollback_read_models.sql", "CREATE TABLE IF NOT EXISTS old_read_models (id bigint);\n")
    report = project.lint()
    assert rules_of(report, "drop-without-rollback") == [] and rules_of(report, "rollback-invalid") == []


# --- 8. the hook in real repositories, SARIF -----------------------------------------------------

@pytest.mark.parametrize("layout, migrations_dir", [
    ("db/migration/V1__a.sql", "db/migration"), ("sql/001_a.sql", "sql"), ("migrations/001_a.SQL", "migrations"),
])
def test_the_hook_lints_the_configured_directories(tmp_path, cli_process, layout, migrations_dir):
    (tmp_path / "safemig.toml").write_text(f'migrations_dir = "{migrations_dir}"\n')
    path = tmp_path / layout
    path.parent.mkdir(parents=True)
    path.write_text("ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n")
    other = tmp_path / "docs" / "queries" / "report.sql"
    other.parent.mkdir(parents=True)
    other.write_text("DELETE FROM t;\n")
    result = cli_process("lint", "--hook", "--format", "json", layout, "docs/queries/report.sql", cwd=tmp_path)
    assert result.exit_code == 1, result.stderr
    assert {f["path"] for f in json.loads(result.stdout)} == {layout}


def test_a_monorepo_uses_the_nearest_config(tmp_path, cli_process):
    service = tmp_path / "services" / "billing"
    (service / "db").mkdir(parents=True)
    (service / "undo").mkdir()
    (service / "safemig.toml").write_text('migrations_dir = "db"\nrollbacks_dir = "undo"\n')
    (tmp_path / "safemig.toml").write_text('migrations_dir = "migrations"\n')
    (service / "db" / "005_drop_legacy.sql").write_text("SET lock_timeout = '5s';\nDROP TABLE IF EXISTS legacy;\n")
    (service / "undo" / "005_rollback_drop_legacy.sql").write_text("CREATE TABLE IF NOT EXISTS legacy (id bigint);\n")
    result = cli_process("lint", "--hook", "--format", "json", "services/billing/db/005_drop_legacy.sql", cwd=tmp_path)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_sarif_uris_are_percent_encoded_and_rules_carry_help(project, cli):
    project.write("migrations/005 drop #1.sql", "DROP TABLE legacy;\n")
    result = cli("lint", "--format", "sarif", "migrations/005 drop #1.sql", cwd=project.root)
    sarif = json.loads(result.stdout)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert uris == {"migrations/005%20drop%20%231.sql"}
    for rule in sarif["runs"][0]["tool"]["driver"]["rules"]:
        assert "Why:" in rule["help"]["text"] and "**Bad:**" in rule["help"]["markdown"]


def test_sarif_has_no_help_uri_unless_rule_docs_url_is_set(project, cli):
    project.write("migrations/005_drop.sql", "DROP TABLE legacy;\n")
    rules = json.loads(cli("lint", "-f", "sarif", cwd=project.root).stdout)["runs"][0]["tool"]["driver"]["rules"]
    assert rules and all("helpUri" not in r for r in rules)  # no invented URL
    project.write("safemig.toml", 'migrations_dir = "migrations"\n[lint]\n'
                  'rule_docs_url = "https://wiki.example.com/db/lint#{rule}"\n')
    rules = json.loads(cli("lint", "-f", "sarif", cwd=project.root).stdout)["runs"][0]["tool"]["driver"]["rules"]
    assert {r["id"]: r["helpUri"] for r in rules} == {
        r["id"]: f"https://wiki.example.com/db/lint#{r['id']}" for r in rules}
    assert all("Why:" in r["help"]["text"] for r in rules)  # the help text stays
    project.write("rules/policy.toml", 'rule_docs_url = "https://docs.example.com/{rule}.html"\n')
    rules = json.loads(cli("lint", "-f", "sarif", cwd=project.root).stdout)["runs"][0]["tool"]["driver"]["rules"]
    assert rules[0]["helpUri"].startswith("https://wiki.example.com/")  # [lint] wins key by key


@pytest.mark.parametrize("value, message", [
    ('"docs/{rule}.md"', "is not an absolute URL"),
    ('"https://wiki.example.com/lint"', "has no {rule} placeholder"),
    ('"https://wiki.example.com/{rule}/{id}"', "{rule} is the only placeholder"),
    ("5", "has no {rule} placeholder"),
])
def test_a_bad_rule_docs_url_is_a_config_error(project, cli, value, message):
    project.write("safemig.toml", f'migrations_dir = "migrations"\n[lint]\nrule_docs_url = {value}\n')
    project.write("migrations/005_drop.sql", "DROP TABLE legacy;\n")
    result = cli("lint", "-f", "sarif", cwd=project.root)
    assert result.exit_code == 2
    assert "rule_docs_url" in result.stderr and message in result.stderr


def test_every_rule_is_documented_in_rules_and_explain(cli, project):
    listed = cli("rules", cwd=project.root).stdout
    for rule_id in ("unsupported-syntax", "set-not-null", "missing-lock-timeout"):
        assert rule_id in listed
        assert "Why:" in cli("explain", rule_id, cwd=project.root).stdout


def test_readme_documents_the_house_rule_api():
    from safemig.lint import facts

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- section:lint -->"):readme.index("<!-- /section:lint -->")]
    for name in ("drops", "alter_actions", "added_constraints", "columns", "column_type", "strings"):
        assert name in facts.__all__ and f"`{name}" in section, name


# --- 9. speed: the redaction of a large report is cheaper and still the same ----------------------


_TOKENS = ["password", "PASSWORD", "Password", "=", " = ", "'", "se cret", "\\\\'", "?", "&", "password=",
           "aws_secret_access_key", "SecretAccessKey", "secret_access_key", "aws_session_token", ":", '"', "x",
           "\n", " ", "mysecret_access_key", "paSSword", "AKIAABCDEFGHIJKLMNOP", "pw1"]


def _slow_redact(text: str) -> str:
    """What redact() did before it looked for its anchors first (one sub per pattern over the whole text)."""
    from safemig import redact as r

    out = text
    lowered = text.casefold()
    if "password" in lowered:
        out = r._CONNINFO_PASSWORD.sub(lambda m: f"{m.group('key')}{r.MASK}", out)
        out = r._QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}{r.MASK}", out)
    if "AKIA" in text or "ASIA" in text:
        out = r._AWS_KEY_ID.sub(r.MASK, out)
    if "secret" in lowered or "session_token" in lowered:
        out = r._AWS_SECRET.sub(lambda m: f"{m.group('key')}{r.MASK}", out)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join))
def test_anchored_redaction_masks_what_the_plain_patterns_mask(text):
    import os
    from unittest import mock

    from safemig import redact as r

    # without what other tests left behind: passwords remembered from URLs, AWS variables of moto
    with mock.patch.object(r, "_seen_passwords", set()), mock.patch.dict(os.environ, dict.fromkeys(r._SECRET_ENV_VARS, "")):
        assert r.redact(text) == _slow_redact(text)


def test_a_function_created_by_an_earlier_migration_keeps_its_volatility(project):
    # ente's pattern: now_utc_micro_seconds() defined once, used as a DEFAULT by later migrations
    project.write("migrations/001_create_clock.sql", LOCK + (
        "CREATE OR REPLACE FUNCTION now_utc_micro_seconds() RETURNS bigint LANGUAGE sql STABLE\n"
        "    AS $$ SELECT CAST(extract(EPOCH FROM now()) * 1000000 AS bigint) $$;\n"
        "CREATE OR REPLACE FUNCTION random_code() RETURNS text LANGUAGE sql AS $$ SELECT md5(random()::text) $$;\n"))
    project.write("migrations/002_add_times.sql", LOCK + (
        "ALTER TABLE files ADD COLUMN IF NOT EXISTS updated_at bigint DEFAULT now_utc_micro_seconds();\n"
        "ALTER TABLE files ADD COLUMN IF NOT EXISTS code text DEFAULT random_code();\n"))
    (finding,) = rules_of(project.lint("migrations/002_add_times.sql"), "volatile-default")
    assert finding.line == 3 and "declared VOLATILE (the default) by an earlier migration" in finding.message


def test_the_servers_major_is_the_default_target_and_the_config_wins(tmp_path, monkeypatch):
    from safemig.lint import lint_paths

    sql = "-- no-transaction\n" + LOCK + "ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null NOT NULL currency;\n"
    project = _versioned(tmp_path, monkeypatch, None)
    project.write("migrations/005_change.sql", sql)
    paths = [project.root / "migrations"]

    def found(**kwargs):
        report = lint_paths(paths, project.config(), use_cache=False, **kwargs)
        return bool(rules_of(report, "unsupported-syntax"))

    assert found() and found(server_major=17) and not found(server_major=18)  # --pending --env: the server's
    project = _versioned(tmp_path, monkeypatch, 16)
    assert found(server_major=18)  # [lint] pg_version says which servers run the migrations
