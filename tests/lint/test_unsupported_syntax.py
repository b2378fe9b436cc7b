"""unsupported-syntax on whole migrations (no server): whose function a name is, DO bodies, removed
names, messages. What each feature needs is measured on real servers in
test_unsupported_syntax_servers.py."""

from __future__ import annotations

import pytest

from tests.lint.conftest import Project, rules_of

LOCK = "SET lock_timeout = '5s';\n"


def _found(project: Project, sql: str, version: int | None = None, name: str = "005_change.sql"):
    if version is not None:
        (project.root / "safemig.toml").write_text(
            (project.root / "safemig.toml").read_text(encoding="utf-8") + f"\n[lint]\npg_version = {version}\n",
            encoding="utf-8",
        )
    project.write(f"migrations/{name}", "-- no-transaction\n" + LOCK + sql + "\n")
    return rules_of(project.lint(), "unsupported-syntax")


def test_a_new_built_in_function_is_reported_with_its_major_and_a_way_out(project):
    (finding,) = _found(project, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS public_id uuid DEFAULT uuidv7();")
    assert finding.message.startswith("uuidv7() needs PostgreSQL 18; the target ([lint] pg_version) is 15")
    assert "gen_random_uuid()" in finding.hint and "earlier migration" in finding.hint


def test_a_function_the_migrations_create_is_theirs(project):
    create = "CREATE OR REPLACE FUNCTION uuidv7() RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()';\n"
    assert _found(project, create + "SELECT uuidv7();") == []  # earlier in the same file
    project.write("migrations/004_uuidv7.sql", LOCK + create)
    assert _found(project, "SELECT uuidv7();", name="006_use.sql") == []  # in an earlier migration
    assert _found(project, "SELECT app.casefold('x');", name="007_other.sql") == []  # another schema's
    assert [f.message[:10] for f in _found(project, "SELECT casefold('x');", name="008_new.sql")] == ["casefold()"]


def test_a_do_body_runs_with_the_migration_and_is_checked(project):
    (finding,) = _found(project, "DO $$ BEGIN MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE; END $$;",
                        version=14)  # fmt: skip
    assert finding.message.startswith("MERGE needs PostgreSQL 15")


@pytest.mark.parametrize("version, found", [(15, True), (16, True), (17, True), (14, False)])
def test_a_removed_name_is_reported_from_the_major_that_removed_it(tmp_path, monkeypatch, version, found):
    monkeypatch.chdir(tmp_path)
    project = Project(tmp_path, f"\n[lint]\npg_version = {version}\n")
    project.write("migrations/005_backup.sql", "-- no-transaction\n" + LOCK + "SELECT pg_start_backup('x');\n")
    findings = rules_of(project.lint(), "unsupported-syntax")
    assert bool(findings) == found
    if found:
        assert findings[0].message.startswith("pg_start_backup() was removed in PostgreSQL 15")
        assert "pg_backup_start()" in findings[0].hint


def test_the_newest_target_still_gets_what_it_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = Project(tmp_path, "\n[lint]\npg_version = 18\n")
    project.write("migrations/005_set.sql", "-- no-transaction\n" + LOCK + "SET force_parallel_mode = off;\n")
    (finding,) = rules_of(project.lint(), "unsupported-syntax")
    assert "force_parallel_mode was removed in PostgreSQL 16" in finding.message
    assert "debug_parallel_query" in finding.hint


def test_a_settings_name_in_a_string_or_an_old_spelling_is_not_new(project):
    assert _found(project, "SELECT current_setting('transaction_timeout', true);") == []  # not detectable: a string
    assert _found(project, "GRANT app TO app2 WITH ADMIN OPTION;", name="006_grant.sql") == []
    assert _found(project, "CLUSTER VERBOSE;", name="007_cluster.sql") == []
