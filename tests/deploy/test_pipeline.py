"""`safemig deploy` end to end: a subprocess against two real clusters and moto's S3 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import psycopg

from safemig.db import lock_id
from safemig.local.postgres import DEFAULT_PASSWORD
from safemig.window import DAY_NAMES


def _closed_window() -> str:
    """A one-hour UTC window on a weekday that is neither today nor yesterday: surely closed now."""
    day = DAY_NAMES[(datetime.now(timezone.utc).weekday() + 3) % 7]
    return f'"{day} 01:00-02:00 UTC"'


def _scratch_databases(project) -> list[str]:
    """Rehearsal databases of this project's prod left on the staging server."""
    prefix = project.prod_url.rsplit("/", 1)[1] + "_rehearsal_"
    return [r[0] for r in project.query(project.staging_url, "SELECT datname FROM pg_database") if r[0].startswith(prefix)]


def _gate_verdicts(record: dict) -> dict[str, str]:
    return {g["name"]: g["verdict"] for g in record["gates"]}


def test_happy_path_through_a_closed_window_then_nothing_to_deploy(project):
    project.apply_directly(project.prod_url, [1])  # prod is one migration in; staging is empty
    # prod's planner statistics say items is large (no need to load two million rows for that)
    project.query(project.prod_url, "UPDATE pg_class SET reltuples = 2000000 WHERE relname = 'items' RETURNING 1")
    project.write_config(maintenance_window=_closed_window())

    refused = project.deploy()
    assert refused.exit_code == 1, refused.output
    assert "outside the maintenance window; next window" in refused.stderr
    assert "--outside-window --reason" in refused.stderr
    assert project.s3_keys() == []  # refused in preflight: no backup
    assert project.versions(project.prod_url) == [1]

    result = project.deploy("--outside-window", "--reason", "release 42 hotfix")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for n, title in enumerate(["Preflight", "Lint", "Backup", "Staging rehearsal", "Production apply", "Report"], start=1):
        assert f"[{n}/6] {title} ..." in out
    assert "Production apply: passed" in out
    # verbose production log: each statement with its duration
    assert "prod 002_add_note.sql #1 (line 2) ALTER TABLE items ADD COLUMN IF NOT EXISTS note TEXT -> ALTER TABLE in" in out
    assert "prod 003_index_name.sql #1" in out
    # the lock report warns about the ACCESS EXCLUSIVE that 002 takes on a large prod table
    assert "! ACCESS EXCLUSIVE on public.items (002_add_note.sql, held" in out
    assert "~2,000,000 rows on prod): a large table; its reads and writes wait until the migration commits" in out
    assert "lock: SHARE UPDATE EXCLUSIVE on public.items (003_index_name.sql" in out
    assert DEFAULT_PASSWORD not in result.output

    assert project.versions(project.prod_url) == [1, 2, 3]
    assert project.versions(project.staging_url) == []  # rehearsal = "restore" (the default): staging's own database untouched
    assert "note" in project.columns(project.prod_url, "items")
    assert project.query(project.prod_url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_items_name'")[0][0] == 1

    records = project.records()
    assert [r["status"] for r in records] == ["failed", "deployed"]
    assert records[0]["failed_gate"] == "preflight" and "next window" in records[0]["error"]
    record = records[1]
    verdicts = _gate_verdicts(record)
    assert verdicts.pop("lint") in ("passed", "passed with warnings")  # lint warnings do not stop a deploy
    assert verdicts == {"preflight": "passed with warnings", "backup": "passed", "staging": "passed with warnings", "production": "passed"}
    assert record["window"]["override_reason"] == "release 42 hotfix"
    assert record["operator"]["user"] and record["operator"]["host"]
    assert [a["version"] for a in record["applied"]] == [2, 3]
    ran_on = record["rehearsal"]["ran_on"]
    assert record["rehearsal"]["mode"] == "restore" and ran_on["backup_uri"] == record["backup"]["uri"]
    assert ran_on["database"].startswith(project.prod_url.rsplit("/", 1)[1] + "_rehearsal_") and not ran_on["kept"]
    assert ran_on["row_counts"] == {"public.items": 0}
    assert _scratch_databases(project) == []
    assert record["rehearsal"]["rollbacks_rehearsed"] == [2, 3]
    assert record["rehearsal"]["idempotent"] == [2, 3]
    items_lock = next(lk for lk in record["locks"] if lk["relation"] == "public.items")
    assert items_lock["mode"] == "ACCESS EXCLUSIVE" and items_lock["version"] == 2 and items_lock["exists_on_prod"]
    assert items_lock["prod_rows_estimate"] == 2000000 and items_lock["large"]
    assert DEFAULT_PASSWORD not in str(record)

    keys = project.s3_keys()
    dumps = [k for k in keys if k.endswith(".dump")]
    assert len(dumps) == 1 and record["backup"]["uri"] == f"s3://{project.bucket}/{dumps[0]}"
    uploaded = [k for k in keys if k.startswith("t/prod/deploy-") and k.endswith(".json")]
    assert len(uploaded) == 1 and record["record_uri"] == f"s3://{project.bucket}/{uploaded[0]}"
    assert b'"status": "deployed"' in project.s3_get(uploaded[0])

    again = project.deploy("--outside-window", "--reason", "release 42 hotfix")
    assert again.exit_code == 0, again.output
    assert "nothing to deploy" in again.stdout
    assert [k for k in project.s3_keys() if k.endswith(".dump")] == dumps  # no second backup
    assert project.records()[-1]["status"] == "nothing to deploy"


def test_lint_error_stops_before_any_backup(project):
    project.migration("004_broken.sql", "ALTER TABLEE items ADD COLUMN x TEXT;\n")
    result = project.deploy()
    assert result.exit_code == 1, result.output
    assert "Lint: FAILED" in result.stdout
    assert "004_broken.sql:1" in result.stderr and "syntax-error" in result.stderr
    assert "[3/6] Backup ..." not in result.stdout and "[3/6] Backup: not run: lint failed" in result.stdout
    assert project.s3_keys() == []
    assert project.versions(project.prod_url) == []
    (record,) = project.records()
    assert record["failed_gate"] == "lint" and record["backup"] is None
    assert _gate_verdicts(record)["backup"] == "skipped"


def test_migration_failing_on_staging_stops_before_prod(project):
    project.write_config(rehearsal='"staging"')
    project.apply_directly(project.prod_url, [1, 2, 3])
    project.apply_directly(project.staging_url, [1, 2, 3])
    project.migration("004_touch_orders.sql", "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note TEXT;\n")
    project.rollback("004_rollback_orders.sql", "ALTER TABLE orders DROP COLUMN IF EXISTS note;\n")
    before = project.query(project.prod_url, "SELECT version, checksum FROM _sqlx_migrations ORDER BY version")

    result = project.deploy()
    assert result.exit_code == 1, result.output
    assert "Staging rehearsal: FAILED" in result.stdout
    assert "staging rehearsal on staging, applying 004_touch_orders.sql" in result.stderr
    assert "statement 1 `ALTER TABLE orders" in result.stderr and "42P01" in result.stderr
    assert "[5/6] Production apply ..." not in result.stdout and "[5/6] Production apply: not run: staging failed" in result.stdout
    # prod untouched, backup present and named in the record
    assert project.query(project.prod_url, "SELECT version, checksum FROM _sqlx_migrations ORDER BY version") == before
    (record,) = project.records()
    assert record["failed_gate"] == "staging" and record["status"] == "failed"
    dump = record["backup"]["uri"].split("/", 3)[3]
    assert dump in project.s3_keys()
    assert record["record_uri"] and record["record_uri"].endswith(".json")


def test_failing_rollback_script_stops_the_deploy(project):
    project.rollback("002_rollback_note.sql", "ALTER TABLE items DROP COLUMN IF EXISTS note;\nSELECT no_such_cleanup_function();\n")
    result = project.deploy()
    assert result.exit_code == 1, result.output
    assert "running the rollback of 002_add_note.sql" in result.stderr
    assert "statement 2 `SELECT no_such_cleanup_function()`" in result.stderr and "42883" in result.stderr
    assert project.versions(project.prod_url) == []
    (record,) = project.records()
    assert record["failed_gate"] == "staging"


def test_nothing_pending_and_a_concurrent_deploy(project):
    project.apply_directly(project.prod_url, [1, 2, 3])
    dbname = project.prod_url.rsplit("/", 1)[1]
    holder = psycopg.connect(project.prod_url, autocommit=True, application_name="other-deployer")
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_id(dbname),))
        refused = project.deploy()
        assert refused.exit_code == 1, refused.output
        assert "prod is being migrated by another session" in refused.stderr
        assert "other-deployer" in refused.stderr

        def release_once_the_deploy_waits() -> None:
            with psycopg.connect(project.prod_url, autocommit=True) as watcher:
                for _ in range(1500):
                    if watcher.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = 'safemig deploy' AND wait_event = 'advisory'"
                    ).fetchone():
                        break
                    time.sleep(0.02)
            holder.execute("SELECT pg_advisory_unlock_all()")

        releaser = threading.Thread(target=release_once_the_deploy_waits)
        releaser.start()
        waited = project.deploy("--lock-wait", "60")
        releaser.join()
    finally:
        holder.close()
    assert waited.exit_code == 0, waited.output
    assert "waiting up to 60s for the migration lock on prod" in waited.stdout
    assert "nothing to deploy: prod has all 3 migrations applied" in waited.stdout
    assert project.s3_keys() == []  # nothing pending: no backup taken
    assert [r["status"] for r in project.records()] == ["failed", "nothing to deploy"]


class _TableLockHolder:
    """Holds ACCESS SHARE on a prod table in an open transaction (as a long report query would).

    It does not block pg_dump (ACCESS SHARE too) but does block ALTER TABLE. With
    ``release_on_retry`` it lets go once the deploy's statement is seen waiting a second
    time, i.e. after the first attempt hit lock_timeout and the migration was retried.
    """

    def __init__(self, url: str, table: str, release_on_retry: bool) -> None:
        self.url = url
        self.conn = psycopg.connect(url)
        self.conn.execute(f"SELECT count(*) FROM {table}")  # opens the transaction, keeps the lock
        self.release_on_retry = release_on_retry
        self.waits: set = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as watcher:
            while not self._stop.wait(0.02):
                rows = watcher.execute(
                    "SELECT query_start FROM pg_stat_activity WHERE application_name = 'safemig deploy' AND wait_event_type = 'Lock'"
                ).fetchall()
                self.waits.update(r[0] for r in rows)
                if self.release_on_retry and len(self.waits) >= 2:
                    self.conn.rollback()
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.conn.close()


def _deploy_while_items_is_locked(project, *, release_on_retry: bool, **settings: str):
    """prod at version 1, ``items`` held by another session, then ``safemig deploy``."""
    project.apply_directly(project.prod_url, [1])
    project.write_config(**settings)
    holder = _TableLockHolder(project.prod_url, "items", release_on_retry=release_on_retry)
    try:
        return project.deploy(), holder
    finally:
        holder.close()


def test_lock_timeout_on_prod_is_retried_then_succeeds(project):
    result, holder = _deploy_while_items_is_locked(
        project, release_on_retry=True, lock_timeout='"300ms"', lock_retries="5", retry_backoff='"0.2s"'
    )
    assert result.exit_code == 0, result.output
    assert "prod: 002_add_note.sql hit lock_timeout (attempt 1: 55P03" in result.stdout
    assert len(holder.waits) >= 2
    assert project.versions(project.prod_url) == [1, 2, 3]
    record = project.records()[-1]
    assert _gate_verdicts(record)["production"] == "passed with warnings"


def test_lock_timeout_on_prod_fails_cleanly_with_the_migration_rolled_back(project):
    result, _ = _deploy_while_items_is_locked(
        project, release_on_retry=False, lock_timeout='"200ms"', lock_retries="1", retry_backoff='"0.1s"',
        rehearsal='"staging"',
    )
    assert result.exit_code == 1, result.output
    assert "Production apply: FAILED" in result.stdout
    assert "55P03" in result.stderr and "002_add_note.sql" in result.stderr
    assert "no migration of this deploy was applied" in result.stderr
    assert "backup taken before the deploy: s3://" in result.stderr
    assert project.versions(project.prod_url) == [1]
    assert "note" not in project.columns(project.prod_url, "items")
    record = project.records()[-1]
    assert record["failed_gate"] == "production" and record["applied"] == []
    assert record["backup"]["uri"].startswith(f"s3://{project.bucket}/")

    # Staging passed, so it is now ahead of prod; the next deploy reverts it to prod's state first.
    assert project.versions(project.staging_url) == [1, 2, 3]
    retry = project.deploy("--json")
    assert retry.exit_code == 0, retry.output
    data = json.loads(retry.stdout)  # --json: the record on stdout, the gates on stderr
    assert data["status"] == "deployed" and "[5/6] Production apply" in retry.stderr
    assert data["rehearsal"]["aligned_reverted"] == [3, 2]
    assert project.versions(project.prod_url) == [1, 2, 3]


def test_dry_run_prints_the_plan_and_changes_nothing(project):
    (project.root / "rollbacks" / "003_rollback_index.sql").unlink()
    result = project.deploy("--dry-run")
    assert result.exit_code == 0, result.output
    assert "Plan for prod (dry run: nothing was changed)" in result.stdout
    assert f"back up prod to s3://{project.bucket}/t/prod/" in result.stdout
    assert "rollback: 001_rollback_items.sql" in result.stdout
    assert "003_index_name.sql" in result.stdout and "no transaction" in result.stdout
    assert "NONE (no rollback script)" in result.stdout
    plan = json.loads(project.deploy("--dry-run", "--json").stdout)
    assert [(p["version"], p["rollback"], p["transaction"]) for p in plan["pending"]] == [
        (1, "rollbacks/001_rollback_items.sql", True), (2, "rollbacks/002_rollback_note.sql", True), (3, None, False),
    ]
    assert project.versions(project.prod_url) == [] and project.versions(project.staging_url) == []
    assert project.s3_keys() == [] and project.records() == []


def test_dry_run_without_staging_says_so(project):
    project.write_config(staging='"none"')
    result = project.deploy("--dry-run")
    assert result.exit_code == 0, result.output
    assert 'no staging rehearsal (staging = "none")' in result.stdout


def test_config_errors_exit_2_before_touching_anything(project):
    project.write_config(staging=None)
    result = project.deploy()
    assert result.exit_code == 2
    assert "envs.prod names no staging env to rehearse its deploys on" in result.stderr
    assert 'staging = "none"' in result.stderr
    project.write_config(lock_retries='"many"')
    result = project.deploy()
    assert result.exit_code == 2 and "envs.prod.lock_retries" in result.stderr
    result = project.deploy("--outside-window")
    assert result.exit_code == 2 and "--outside-window needs --reason" in result.stderr
    project.write_config()
    alias = project.prod_url.replace("@127.0.0.1:", "@localhost:")  # another URL, the same database
    result = project.run_cli("deploy", "--env", "prod", cwd=project.root, env={**project.env, "STAGING_DATABASE_URL": alias})
    assert result.exit_code == 2, result.output
    assert "and its staging env staging reach the same database" in result.stderr
    assert project.s3_keys() == [] and project.versions(project.prod_url) == []


def test_unreachable_database_exits_3(project):
    project.write_config(ready_timeout='"1s"')
    env = {"PROD_DATABASE_URL": "postgresql://u:hunter2secret@127.0.0.1:1/db"}
    result = project.run_cli("deploy", "--env", "prod", cwd=project.root, env={**project.env, **env})
    assert result.exit_code == 3, result.output
    assert "error: prod: postgresql://u:****@127.0.0.1:1/db does not answer" in result.stderr
    assert "hunter2secret" not in result.output
    (record,) = project.records()
    assert record["failed_gate"] == "preflight" and "hunter2secret" not in str(record)


def test_ctrl_c_during_the_production_apply_rolls_back_and_records_it(project):
    project.apply_directly(project.prod_url, [1])
    project.write_config(lock_timeout='"60s"', lock_retries="0")
    holder = _TableLockHolder(project.prod_url, "items", release_on_retry=False)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "safemig.cli", "deploy", "--env", "prod"], cwd=project.root,
            env={**os.environ, **project.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        while not holder.waits and time.monotonic() < deadline:  # the ALTER is queued behind our lock
            time.sleep(0.05)
        assert holder.waits, "the deploy never reached the production apply"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        holder.close()
    assert proc.returncode == 130, stdout + stderr
    assert "Production apply: FAILED" in stdout and "interrupted" in stdout
    assert project.versions(project.prod_url) == [1]
    assert "note" not in project.columns(project.prod_url, "items")
    record = project.records()[-1]
    assert (record["status"], record["failed_gate"], record["error"]) == ("failed", "production", "interrupted")
    # the lock was released with the session: a new deploy can take it at once
    dbname = project.prod_url.rsplit("/", 1)[1]
    assert project.query(project.prod_url, f"SELECT pg_try_advisory_lock({lock_id(dbname)})")[0][0] is True


def test_backup_failure_stops_before_staging_and_prod(project):
    project.bucket = "no-such-bucket-for-deploy"
    project.write_config()
    result = project.deploy()
    assert result.exit_code == 3, result.output
    assert "Backup: FAILED" in result.stdout and "[4/6] Staging rehearsal: not run: backup failed" in result.stdout
    assert "no-such-bucket-for-deploy" in result.stderr
    assert project.versions(project.prod_url) == [] and project.versions(project.staging_url) == []
    (record,) = project.records()
    assert record["failed_gate"] == "backup" and record["backup"] is None and record["record_uri"] is None


def test_staging_none_deploys_without_a_rehearsal_and_says_so(project):
    project.write_config(staging='"none"')
    result = project.deploy()
    assert result.exit_code == 0, result.output
    assert "[4/6] Staging rehearsal" not in result.stdout
    assert 'no staging rehearsal: envs.prod.staging = "none"' in result.stdout
    assert project.versions(project.prod_url) == [1, 2, 3] and project.versions(project.staging_url) == []
    (record,) = project.records()
    assert _gate_verdicts(record)["staging"] == "skipped" and record["staging_env"] is None


def test_sigterm_during_the_backup_gate_aborts_the_upload_and_records_it(project):
    """CI cancelling a deploy (SIGTERM) while pg_dump streams: no object, no open upload, a record, exit 130."""
    import boto3

    from tests.deploy.conftest import _creds

    project.apply_directly(project.prod_url, [1])
    s3 = boto3.client("s3", endpoint_url=project.s3.endpoint_url, **_creds(project.s3))
    blocker = psycopg.connect(project.prod_url)
    blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # pg_dump waits here, its upload open
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "safemig.cli", "deploy", "--env", "prod"], cwd=project.root,
            env={**os.environ, **project.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        while not s3.list_multipart_uploads(Bucket=project.bucket).get("Uploads") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the deploy ended before its backup started"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        blocker.close()
    assert proc.returncode == 130, stdout + stderr
    assert s3.list_multipart_uploads(Bucket=project.bucket).get("Uploads", []) == []
    assert project.s3_keys() == []
    assert project.versions(project.prod_url) == [1] and project.versions(project.staging_url) == []
    record = project.records()[-1]
    assert (record["status"], record["failed_gate"], record["error"]) == ("failed", "backup", "interrupted")


def test_multi_host_database_url_deploys_with_its_password_masked(project):
    """libpq's multi-host URL (an HA pair: the first host down here) is a normal prod setting, not a crash."""
    multi = project.prod_url.replace("@127.0.0.1:", "@127.0.0.1:1,127.0.0.1:", 1)
    result = project.run_cli("deploy", "--env", "prod", cwd=project.root, env={**project.env, "PROD_DATABASE_URL": multi})
    assert result.exit_code == 0, result.output
    assert project.versions(project.prod_url) == [1, 2, 3]
    (record,) = project.records()
    assert record["database"].startswith("postgresql://postgres:****@127.0.0.1:1,127.0.0.1:")
    assert DEFAULT_PASSWORD not in result.output + json.dumps(record)


def test_conninfo_url_with_the_password_last_keeps_the_record_valid_json(project):
    """``key=value`` conninfo ending in ``password=...``: masked in the record, which stays parseable JSON."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(project.prod_url)
    conninfo = " ".join(f"{k}={params[k]}" for k in ("host", "port", "user", "dbname")) + f" password={params['password']}"
    result = project.run_cli("deploy", "--env", "prod", "--json", cwd=project.root, env={**project.env, "PROD_DATABASE_URL": conninfo})
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    (record,) = project.records()
    uploaded = json.loads(project.s3_get(record["record_uri"].split("/", 3)[3]))
    for data in (printed, record, uploaded):
        assert data["database"].endswith(" password=****") and data["status"] == "deployed"
    assert DEFAULT_PASSWORD not in result.output + json.dumps(record) + json.dumps(uploaded)
