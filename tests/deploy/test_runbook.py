"""`safemig runbook`: the Markdown runbook for the pending deploy, from the real ledger."""

from __future__ import annotations

from safemig.deploy.expectations import expected_locks
from safemig.local.postgres import DEFAULT_PASSWORD


def _in(project, monkeypatch):
    for key, value in project.env.items():
        monkeypatch.setenv(key, value)


def test_runbook_for_pending_migrations(project, cli, monkeypatch):
    _in(project, monkeypatch)
    project.apply_directly(project.prod_url, [1])
    (project.root / "rollbacks" / "003_rollback_index.sql").unlink()
    project.migration("004_drop_legacy.sql", "DROP TABLE IF EXISTS legacy_items;\n")  # no rollback: lint error
    project.write_config(maintenance_window='"Sat,Sun 02:00-04:00 Europe/Berlin"')

    result = cli("runbook", "--env", "prod", "-o", "RUNBOOK.md", cwd=project.root)
    assert result.exit_code == 0, result.output
    text = (project.root / "RUNBOOK.md").read_text()

    assert text.startswith("# Maintenance runbook: deploy to `prod`")
    assert "| Pending migrations | **3** |" in text
    assert "Configured window(s): `Sat,Sun 02:00-04:00 Europe/Berlin`" in text
    assert "Subject: Scheduled database maintenance (prod)" in text
    # pending migrations in order, with transaction mode, lint verdict and rollback
    assert text.index("| 2 | `docker/migrations/002_add_note.sql`") < text.index("| 3 | `docker/migrations/003_index_name.sql`")
    assert "| 3 | `docker/migrations/003_index_name.sql` | no (`-- no-transaction`) |" in text
    assert "| `rollbacks/002_rollback_note.sql` |" in text
    assert "**drop-without-rollback**" in text and "> [!CAUTION]" in text
    assert "🚨 **NONE**" in text and "**No rollback script** for `003_index_name.sql`, `004_drop_legacy.sql`" in text
    # lock expectations: the ALTER on an existing table is ACCESS EXCLUSIVE, the concurrent index is not
    assert "| 2 | 2 | `ALTER TABLE items ADD COLUMN IF NOT EXISTS note TEXT` | `items` | **ACCESS EXCLUSIVE** | all reads and writes |" in text
    assert "| `items` | SHARE UPDATE EXCLUSIVE |" in text
    # exact commands for this env
    assert "safemig backup --env prod --label before-maintenance" in text
    assert "--env prod --from '<BACKUP_URI>'" in text and 'psql "$PROD_DATABASE_URL"' in text
    assert "Affected tables: items, legacy_items." in text
    assert "safemig deploy --env prod\n" in text
    assert "safemig migrate revert --env prod" in text
    assert "safemig migrate mark-applied <VERSION> --env prod --reason 'fixed by hand during the window'" in text
    assert "SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid;" in text
    assert DEFAULT_PASSWORD not in text
    # every fenced block is closed (renders on GitHub)
    assert text.count("```") % 2 == 0


def test_runbook_says_nothing_to_deploy_and_prints_to_stdout(project, cli, monkeypatch):
    _in(project, monkeypatch)
    project.apply_directly(project.prod_url, [1, 2, 3])
    result = cli("runbook", "--env", "prod", cwd=project.root)
    assert result.exit_code == 0, result.output
    assert "Nothing to deploy" in result.stdout


def test_runbook_lists_lint_errors_that_will_stop_the_deploy(project, cli, monkeypatch):
    _in(project, monkeypatch)
    project.migration("004_broken.sql", "ALTER TABLEE items ADD COLUMN x TEXT;\n")
    result = cli("runbook", "--env", "prod", cwd=project.root)
    assert result.exit_code == 0, result.output
    assert "> [!CAUTION]" in result.stdout
    assert "**syntax-error**" in result.stdout and "❌ 1 error(s)" in result.stdout


def test_expected_locks_follow_postgresql_lock_levels():
    sql = (
        "CREATE TABLE IF NOT EXISTS fresh (id int);\n"
        "ALTER TABLE fresh ADD COLUMN x int;\n"
        "ALTER TABLE old VALIDATE CONSTRAINT c;\n"
        "ALTER TABLE old ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES other (id) NOT VALID;\n"
        "CREATE INDEX idx ON old (a);\n"
        "DROP INDEX CONCURRENTLY IF EXISTS idx2;\n"
        "LOCK TABLE old IN SHARE ROW EXCLUSIVE MODE;\n"
        "UPDATE old SET a = 1 WHERE id = 2;\n"
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
    )
    got = [(e.line, e.table, e.mode, e.new_table) for e in expected_locks(sql)]
    assert got == [
        (2, "fresh", "ACCESS EXCLUSIVE", True),
        (3, "old", "SHARE UPDATE EXCLUSIVE", False),
        (4, "old", "SHARE ROW EXCLUSIVE", False),
        (4, "other", "SHARE ROW EXCLUSIVE", False),
        (5, "old", "SHARE", False),
        (6, "idx2", "SHARE UPDATE EXCLUSIVE", False),
        (7, "old", "SHARE ROW EXCLUSIVE", False),
        (8, "old", "ROW EXCLUSIVE", False),
    ]
