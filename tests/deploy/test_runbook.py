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


def _bash_block_with(text: str, needle: str) -> str:
    blocks = text.split("```bash\n")[1:]
    return next(b.split("```")[0] for b in blocks if needle in b)


def test_the_restore_command_refuses_an_empty_target_prod_and_a_password(project, cli, monkeypatch, tmp_path):
    import os
    import subprocess

    _in(project, monkeypatch)
    result = cli("runbook", "--env", "prod", cwd=project.root)
    assert result.exit_code == 0, result.output
    block = _bash_block_with(result.stdout, "TARGET_DATABASE_URL:?")
    script = "\n".join(line for line in block.splitlines() if not line.startswith("export "))
    # a stand-in `safemig` that records its arguments instead of restoring
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "safemig").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "safemig").chmod(0o755)

    def run(target: str | None):
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PROD_DATABASE_URL": project.prod_url}
        if target is not None:
            env["TARGET_DATABASE_URL"] = target
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=10)

    assert run(None).returncode != 0 and "set TARGET_DATABASE_URL" in run(None).stderr
    assert run("").returncode != 0
    assert "refusing: that is prod's database" in run(project.prod_url).stderr
    assert "holds a password" in run("postgresql://u:secret@db:5432/scratch").stderr
    assert not calls.exists()  # none of those ran safemig
    assert run("postgresql://u@db:5432/scratch").returncode == 0
    assert calls.read_text().split() == [
        "restore", "--env", "prod", "--from", "<BACKUP_URI>", "--target-database-url", "postgresql://u@db:5432/scratch"
    ]


def test_the_notice_never_promises_no_data_loss_when_the_deploy_drops_something(project, cli, monkeypatch):
    _in(project, monkeypatch)
    safe = cli("runbook", "--env", "prod", cwd=project.root).stdout
    assert "No existing data is removed or rewritten" in safe
    project.migration("004_drop_note.sql", "DO $$ BEGIN ALTER TABLE items DROP COLUMN IF EXISTS note; END $$;\n")
    project.migration("005_purge.sql", "TRUNCATE items;\n")
    text = cli("runbook", "--env", "prod", cwd=project.root).stdout
    notice = text.split("```text\n")[1].split("```")[0]
    assert "no data loss" not in notice.lower() and "No existing data" not in notice
    assert "permanently removes or rewrites existing data: DROP COLUMN items.note; TRUNCATE items." in notice


def test_the_runbook_has_the_incident_paths(project, cli, monkeypatch):
    _in(project, monkeypatch)
    project.apply_directly(project.prod_url, [1])
    text = cli("runbook", "--env", "prod", cwd=project.root).stdout
    assert "### 8.1 The deploy was interrupted" in text
    assert "WHERE l.relation IN (to_regclass('items'))" in text and "SELECT pg_terminate_backend(<PID>);" in text
    assert "pg_blocking_pids(l.pid)" in text
    assert "FROM pg_index WHERE NOT indisvalid" in text
    assert "DROP INDEX CONCURRENTLY IF EXISTS idx_items_name;" in text  # the index 003 builds
    assert "safemig migrate revert --env prod --target-version 1 --dry-run" in text
    assert "**every write made since the dump began is lost**" in text
    assert "safemig restore --env prod --from '<BACKUP_URI>' --clean --confirm-clean" in text
    assert DEFAULT_PASSWORD not in text and text.count("```") % 2 == 0
    # the queries it gives run as written on a real server (placeholders aside)
    import psycopg

    incident = text.split("### 8.1")[1].split("### 8.3")[0]
    queries = [q for block in incident.split("```sql\n")[1:] for q in block.split("```")[0].split(";") if q.strip()]
    runnable = [q for q in queries if "<" not in q and not q.strip().startswith("--")]
    assert len(runnable) >= 3
    with psycopg.connect(project.prod_url, autocommit=True) as conn:
        for query in runnable:
            conn.execute(query)


def test_the_runbook_shows_what_the_rehearsal_of_the_same_pending_set_measured(project, cli, monkeypatch):
    import psycopg

    _in(project, monkeypatch)
    project.apply_directly(project.prod_url, [1])
    before = cli("runbook", "--env", "prod", cwd=project.root).stdout
    assert "none recorded for this pending set" in before
    # a deploy whose rehearsal passes and whose prod apply is blocked: prod is still pending, the record has the figures
    project.write_config(lock_timeout='"200ms"', lock_retries="0")
    with psycopg.connect(project.prod_url, application_name="blocker-app") as holder:
        holder.execute("SELECT count(*) FROM items")
        failed = project.deploy("--outside-window", "--reason", "test")
        holder.rollback()
    assert failed.exit_code == 1 and project.records()[-1]["failed_gate"] == "production", failed.output
    record_id = project.records()[-1]["id"]

    text = cli("runbook", "--env", "prod", cwd=project.root).stdout
    assert f"| Rehearsal measurements | deploy `{record_id}`" in text
    assert "### Locks measured by the rehearsal" in text
    assert "| 2 | `public.items` | **ACCESS EXCLUSIVE** |" in text
    assert "| 3 | `public.items` | SHARE UPDATE EXCLUSIVE" in text  # measured, or predicted when too quick to sample
    assert " Rehearsed in |" in text and "| `rollbacks/002_rollback_note.sql` | " in text
    assert "### Expected locks (predicted from the SQL)" in text

    # an edited file is not the same pending set: its stale figures are not shown
    project.migration("002_add_note.sql", "ALTER TABLE items ADD COLUMN IF NOT EXISTS note TEXT DEFAULT '';\n")
    edited = cli("runbook", "--env", "prod", cwd=project.root).stdout
    assert "none recorded for this pending set" in edited and "Locks measured" not in edited


def test_the_waiters_query_names_the_blocking_session(database_url):
    import threading
    import time

    import psycopg

    from safemig.deploy.runbook import WAITERS_SQL

    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE items (id int)")
    with psycopg.connect(database_url, application_name="blocker-app") as holder, psycopg.connect(
        database_url, autocommit=True
    ) as waiter, psycopg.connect(database_url, autocommit=True) as watcher:
        holder.execute("SELECT count(*) FROM items")
        pids = (waiter.info.backend_pid, holder.info.backend_pid)
        thread = threading.Thread(target=lambda: waiter.execute("SET lock_timeout = '5s'; ALTER TABLE items ADD x int"))
        thread.start()
        try:
            for _ in range(100):
                rows = watcher.execute(WAITERS_SQL).fetchall()
                if rows:
                    break
                time.sleep(0.05)
        finally:
            holder.rollback()
            thread.join()
    ((waiting_pid, _, waiting_query, blocking_pid, app, _, state, _, blocking_query),) = rows
    assert (waiting_pid, blocking_pid) == pids
    assert (app, state, blocking_query) == ("blocker-app", "idle in transaction", "SELECT count(*) FROM items")
    assert "ALTER TABLE items" in waiting_query
