"""``safemig runbook``: the maintenance-window runbook for the pending deploy, in Markdown.

Everything a person on call needs during the window, filled in for this env and these
migrations rather than written as a generic checklist: when the window is and a notice
to send, what will run (with lint verdicts and the table locks each statement is
expected to take), the exact backup/restore commands, each migration's rollback script
(the missing ones marked loudly), the deploy command, what to watch afterwards, and the
incident paths (a failed or interrupted deploy, undoing it, restoring prod) as real
commands. GitHub renders it as it is.

When the project's deploy records (``.safemig/deploys/``) hold a rehearsal of this very
pending set (same versions, same files, same statements), the runbook shows what that
rehearsal measured (each migration's duration, the locks taken and how long they were
held) next to the predictions; otherwise it says that none exists.

Commands never carry a password: URLs are named by their variable, the restore target
must be set (``${VAR:?}``) and may not hold a password (libpq reads ``PGPASSWORD`` or
``~/.pgpass``), and prod's own restore lets safemig resolve prod's URL from the config.

:func:`build_runbook` gathers the facts (it reads prod's ledger, read-only, without the
migration lock); :func:`render_markdown` only formats them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safemig.config import Config, resolve_database_url
from safemig.deploy.expectations import LockExpectation, expected_locks
from safemig.deploy.settings import DeploySettings, deploy_settings
from safemig.deploy.window import WindowStatus, evaluate, format_local
from safemig.errors import SafemigError
from safemig.migrations.files import Migration, discover, find_rollback
from safemig.redact import mask_url


@dataclass
class RunbookItem:
    """One pending migration with what the runbook says about it."""

    migration: Migration
    rollback: Path | None
    lint_errors: list[str] = field(default_factory=list)
    lint_warnings: list[str] = field(default_factory=list)
    locks: list[LockExpectation] = field(default_factory=list)


@dataclass(frozen=True)
class Measured:
    """What a recorded rehearsal of the same pending set measured."""

    record_id: str
    started_at: str
    ran_on: str  # where: the scratch database restored from the backup, or the staging env
    durations_ms: dict[int, float]  # version -> apply time in the rehearsal
    locks: list[dict[str, Any]]  # the record's roll-up: version, relation, mode, held_ms, rows ...


def _statement_lines(sql: str) -> list[str]:
    from safemig.sql.split import split_statements

    return [st.first_line for st in split_statements(sql)]


def find_rehearsal(root: Path, env: str, pending: list[Migration]) -> Measured | None:
    """The newest deploy record of ``env`` whose rehearsal applied exactly these pending migrations.

    "Exactly": the same versions and files, and the same statements (their first lines,
    the record keeps no checksum), so an edited file is not shown with stale figures.
    A rehearsal that failed part-way measured only part of the set and is not used.
    """
    from safemig.deploy.record import read_records

    wanted = {m.version: m for m in pending}
    try:
        records = read_records(root)
    except (OSError, ValueError):  # an unreadable record is no measurement
        return None
    for record in reversed(records):
        rehearsal = record.get("rehearsal") or {}
        applied: dict[int, dict[str, Any]] = {
            int(a["version"]): a for a in rehearsal.get("applied") or [] if isinstance(a, dict) and "version" in a
        }
        if record.get("env") != env or record.get("dry_run") or set(applied) != set(wanted):
            continue
        if record.get("failed_gate") in ("staging", "rehearsal"):
            continue
        same = all(
            applied[v].get("file") == m.name
            and [st.get("first_line") for st in applied[v].get("statements") or []] == _statement_lines(m.sql)
            for v, m in wanted.items()
        )
        if not same:
            continue
        ran_on = rehearsal.get("ran_on") or {}
        where = ran_on.get("database") or record.get("staging_database") or record.get("staging_env") or "staging"
        if ran_on.get("backup_uri"):
            where = f"{where} (a restore of {ran_on['backup_uri']})"
        return Measured(
            record_id=str(record.get("id", "")),
            started_at=str(record.get("started_at", "")),
            ran_on=str(where),
            durations_ms={v: float(a.get("duration_ms") or 0.0) for v, a in applied.items()},
            locks=[lk for lk in record.get("locks") or [] if isinstance(lk, dict)],
        )
    return None


def data_changes(migration: Migration) -> list[str]:
    """What the migration destroys or rewrites: ``DROP COLUMN items.note``, ``TRUNCATE audit``, ``DELETE FROM t``.

    Read from PostgreSQL's parse tree, DO bodies included; the communication notice never
    promises "no data loss" when this is not empty.
    """
    from safemig.lint import facts
    from safemig.lint.parse import parse_sql

    found = []
    for top in parse_sql(migration.sql).statements:
        if top.node_type is None:
            continue
        for stmt in facts.executed(top):
            for d in facts.drops(stmt):
                if d.kind in ("INDEX", "TRIGGER", "POLICY", "RULE", "FUNCTION", "PROCEDURE", "ROUTINE", "CONSTRAINT"):
                    continue  # no rows go with these
                target = f"{d.table}.{d.name}" if d.table and d.kind != "TRUNCATE" else d.name
                found.append(f"{'TRUNCATE' if d.kind == 'TRUNCATE' else 'DROP ' + d.kind} {target}")
            if stmt.node_type in ("DeleteStmt", "UpdateStmt"):
                verb = "DELETE FROM" if stmt.node_type == "DeleteStmt" else "UPDATE"
                found.append(f"{verb} {facts.target_table(stmt)}")
    return found


@dataclass
class Runbook:
    """The facts a runbook is rendered from."""

    config: Config
    env: str
    settings: DeploySettings
    database: str
    generated_at: datetime
    window: WindowStatus
    items: list[RunbookItem]
    applied_count: int
    backup_destination: str
    restore_command: str
    git: dict | None = None
    newest_applied: int = 0  # before this deploy: `revert --target-version` goes back to it
    measured: Measured | None = None
    data_changes: dict[int, list[str]] = field(default_factory=dict)  # version -> what it destroys or rewrites


def _cmd(config: Config, *args: str) -> str:
    """A safemig command line for this project, with ``--config`` unless the file is ./safemig.toml."""
    parts = ["safemig", *args]
    if config.path is not None and config.path.resolve() != (Path.cwd() / "safemig.toml").resolve():
        try:
            shown = config.path.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = config.path
        parts += ["--config", str(shown)]
    return " ".join(p if p.startswith(("<", "'")) else shlex.quote(p) for p in parts)


def build_runbook(config: Config, env: str, *, now: datetime | None = None) -> Runbook:
    """Read the config, the files and prod's ledger; lint and analyse each pending migration."""
    from safemig import db
    from safemig.deploy.pipeline import backup_destination
    from safemig.deploy.record import git_state
    from safemig.lint.engine import lint_paths
    from safemig.migrations import ledger

    settings = deploy_settings(config, env)
    url = resolve_database_url(config, env=env)
    migrations = discover(config.migrations_dir, ignored_chars=config.sqlx.ignored_chars)
    with db.connect(url, autocommit=True, application_name="safemig runbook") as conn:
        rows = ledger.applied_rows(conn, config.sqlx.table)
        pending = ledger.check(migrations, rows)
        existing = {
            name for (name,) in conn.execute("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p', 'm', 'v')")
        }

    items = []
    created: set[str] = set()
    for m in pending:
        rollback = find_rollback(m, config.rollbacks_dir)
        report = lint_paths([m.path] + ([rollback] if rollback else []), config)
        locks = [
            lk
            if lk.table not in existing
            else LockExpectation(lk.line, lk.statement, lk.table, lk.mode, False, lk.note)
            for lk in expected_locks(m.sql, created)
        ]
        items.append(
            RunbookItem(
                migration=m,
                rollback=rollback,
                lint_errors=[_finding(f, config) for f in report.findings if f.severity == "error"],
                lint_warnings=[_finding(f, config) for f in report.findings if f.severity != "error"],
                locks=locks,
            )
        )
    try:
        destination = backup_destination(config, env)
    except SafemigError as exc:
        destination = f"(not configured: {exc.message})"
    return Runbook(
        config=config,
        env=env,
        settings=settings,
        database=mask_url(url),
        generated_at=now or datetime.now(UTC),
        window=evaluate(settings.windows, now),
        items=items,
        applied_count=sum(1 for r in rows.values() if r.success),
        backup_destination=destination,
        restore_command=_cmd(config, "restore", "--env", env, "--from", "'<BACKUP_URI>'"),
        git=git_state(config.root),
        newest_applied=max((v for v, r in rows.items() if r.success), default=0),
        measured=find_rehearsal(config.root, env, pending),
        data_changes={m.version: found for m in pending if (found := data_changes(m))},
    )


def _finding(f, config: Config) -> str:
    try:
        path = Path(f.path).resolve().relative_to(config.root.resolve())
    except ValueError:
        path = Path(f.path)
    return f"`{path}:{f.line}` **{f.rule}**: {f.message}"


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _url_variable(config: Config, env: str) -> str:
    """``$PROD_DATABASE_URL`` when the env's URL is one variable (it is never printed expanded)."""
    raw = config.env(env).raw.get("database_url")
    match = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", raw) if isinstance(raw, str) else None
    return f"${match.group(1)}" if match else "$DATABASE_URL"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rb: Runbook) -> str:
    """The runbook as GitHub-flavoured Markdown."""
    cfg, env, s = rb.config, rb.env, rb.settings
    deploy_cmd = _cmd(cfg, "deploy", "--env", env)
    out: list[str] = []
    add = out.append

    add(f"# Maintenance runbook: deploy to `{env}`")
    add("")
    commit = (
        f" at commit `{rb.git['commit'][:12]}`" + (" (uncommitted changes!)" if rb.git.get("dirty") else "")
        if rb.git
        else ""
    )
    add(
        f"Generated {rb.generated_at:%Y-%m-%d %H:%M} UTC by `safemig runbook`{commit}. "
        f"Regenerate it right before the window: it reflects `{env}`'s ledger at generation time."
    )
    add("")
    add("| | |")
    add("| --- | --- |")
    add(f"| Database | `{rb.database}` |")
    add(f"| Applied migrations | {rb.applied_count} |")
    add(f"| Pending migrations | **{len(rb.items)}** |")
    rehearsal = f"`{s.staging}`" if s.staging else '**none** (`staging = "none"`)'
    add(f"| Staging rehearsal | {rehearsal} |")
    add(
        f"| Session settings | `lock_timeout = {s.lock_timeout}`, `statement_timeout = {s.statement_timeout}`, "
        f"{s.lock_retries} retries on lock timeout (backoff {s.retry_backoff_s:g}s, doubling) |"
    )
    add(f"| Backups go to | `{rb.backup_destination}` |")
    if rb.measured:
        took = rb.measured
        add(
            f"| Rehearsal measurements | deploy `{took.record_id}` "
            f"({took.started_at[:16].replace('T', ' ')} UTC), on {took.ran_on} |"
        )
    else:
        add(
            "| Rehearsal measurements | none recorded for this pending set: durations and locks below are predictions |"
        )
    add("")

    if not rb.items:
        add(
            f"> [!NOTE]\n> Nothing to deploy: every migration in `{_rel(cfg.migrations_dir, cfg.root)}` "
            f"is applied on `{env}`."
        )
        add("")
        return "\n".join(out) + "\n"

    # -- window and notice ---------------------------------------------------------------
    add("## 1. Maintenance window and communication")
    add("")
    if s.windows:
        add("Configured window(s): " + ", ".join(f"`{w.text}`" for w in s.windows) + ".")
        add("")
        add(f"Status at generation time: {rb.window.describe()}.")
        if rb.window.next_open:
            window, start, end = rb.window.next_open
            when = f"{format_local(start, window.zone)} to {format_local(end, window.zone)}"
        elif rb.window.current:
            window, start, end = rb.window.current
            when = f"now until {format_local(end, window.zone)}"
        else:  # pragma: no cover - evaluate() always finds one within 8 days
            when = "<DATE AND TIME>"
    else:
        add(
            "No `maintenance_window` is configured for this env: `safemig deploy` will not refuse on time. "
            "Schedule a low-traffic period anyway (the guide: avoid peak hours)."
        )
        when = "<DATE AND TIME>"
    add("")
    add("Notice to send beforehand (edit as needed):")
    add("")
    add("```text")
    add(f"Subject: Scheduled database maintenance ({env}), {when}")
    add("")
    add(f"We will apply {len(rb.items)} database schema change(s) to {env} during the window above.")
    add("Short pauses of requests touching the affected tables are possible while locks are held.")
    changes = [c for item in rb.items for c in rb.data_changes.get(item.migration.version, [])]
    if changes:
        add("This change permanently removes or rewrites existing data: " + "; ".join(changes) + ".")
        add("A verified backup is taken first, but restoring it would also undo every write made after it.")
    else:
        add("No existing data is removed or rewritten, and a verified backup is taken first.")
    affected = sorted(
        {lk.table for i in rb.items for lk in i.locks if not lk.table.startswith("(") and not lk.new_table}
    )
    add("Affected tables: " + (", ".join(affected) or "none (only tables created by this deploy)") + ".")
    add("```")
    add("")

    # -- pending migrations ----------------------------------------------------------------
    add("## 2. Pending migrations")
    add("")
    add("Applied in this order, each in its own transaction unless marked `-- no-transaction`.")
    add("")
    measured = rb.measured
    add("| Version | File | Transaction | Lint | Rollback |" + (" Rehearsed in |" if measured else ""))
    add("| --- | --- | --- | --- | --- |" + (" --- |" if measured else ""))
    for item in rb.items:
        m = item.migration
        lint = (
            ("❌ " + f"{len(item.lint_errors)} error(s)")
            if item.lint_errors
            else ("⚠️ " + f"{len(item.lint_warnings)} warning(s)" if item.lint_warnings else "✅ clean")
        )
        rollback = f"`{_rel(item.rollback, cfg.root)}`" if item.rollback else "🚨 **NONE**"
        transaction = "no (`-- no-transaction`)" if m.no_transaction else "yes"
        rehearsed = f" {_ms(measured.durations_ms.get(m.version))} |" if measured else ""
        add(f"| {m.version} | `{_rel(m.path, cfg.root)}` | {transaction} | {lint} | {rollback} |{rehearsed}")
    add("")
    blocked = [i for i in rb.items if i.lint_errors]
    if blocked:
        add("> [!CAUTION]")
        add("> `safemig deploy` will stop at the lint gate until these errors are fixed:")
        for item in blocked:
            for line in item.lint_errors:
                add(f"> - {line}")
        add("")
    for item in rb.items:
        if item.lint_warnings:
            add(f"Lint warnings for `{item.migration.name}`:")
            add("")
            for line in item.lint_warnings:
                add(f"- {line}")
            add("")

    if measured:
        _measured_locks(add, measured, env)
    add("### Expected locks" + (" (predicted from the SQL)" if measured else ""))
    add("")
    add(
        "Predicted from the SQL with PostgreSQL's lock levels (the manual's \"Explicit Locking\" table and each "
        "command's page; a `DO` block's statements are read from its body). In a transactional migration every "
        "lock is held until the migration commits. "
        + (
            "Where they differ from the measured locks above, the measurement is what prod will see."
            if measured
            else "The rehearsal of `safemig deploy` measures the locks really taken; its report and record show them."
        )
    )
    add("")
    rows = [(item, lk) for item in rb.items for lk in item.locks]
    if rows:
        add("| Migration | Line | Statement | Table | Lock | Blocks |")
        add("| --- | --- | --- | --- | --- | --- |")
        for item, lk in rows:
            mode = f"**{lk.mode}**" if lk.mode == "ACCESS EXCLUSIVE" and not lk.new_table else lk.mode
            blocks = lk.blocks + (f" ({lk.note})" if lk.note else "")
            add(
                f"| {item.migration.version} | {lk.line} | `{_cell(lk.statement[:60])}` | `{_cell(lk.table)}` "
                f"| {mode} | {_cell(blocks)} |"
            )
    else:
        add("No statement is expected to lock an existing table.")
    add("")

    # -- backup and restore ----------------------------------------------------------------
    add("## 3. Backup and restore")
    add("")
    add(
        "`safemig deploy` takes and verifies the backup itself (gate 3) and prints its `s3://` URI; "
        "it is also in the deploy record. "
        "To take one by hand:"
    )
    add("")
    add("```bash")
    add(_cmd(cfg, "backup", "--env", env, "--label", "before-maintenance"))
    add(_cmd(cfg, "backups", "--env", env) + "    # list them, newest first")
    add("```")
    add("")
    add(
        "Check a backup by restoring it into an empty scratch database (never prod: see section 8 for that). "
        "Replace `<BACKUP_URI>` with the URI the deploy printed. The command refuses an unset or empty "
        "`TARGET_DATABASE_URL`, prod's own URL, and a URL holding a password (put that in `PGPASSWORD` or "
        "`~/.pgpass`, where libpq finds it, so it never appears on a command line):"
    )
    add("")
    add("```bash")
    add("export TARGET_DATABASE_URL='postgresql://USER@HOST:5432/restore_check'   # an empty database")
    add(_guarded_restore(rb, _url_variable(cfg, env)))
    add("```")
    add("")

    # -- rollbacks -------------------------------------------------------------------------
    add("## 4. Rollback scripts")
    add("")
    missing = [i for i in rb.items if i.rollback is None]
    if missing:
        add("> [!WARNING]")
        add(
            "> **No rollback script** for "
            + ", ".join(f"`{i.migration.name}`" for i in missing)
            + ". Undoing "
            + ("it" if len(missing) == 1 else "them")
            + " means restoring the backup (section 8.4: every write since it is lost). "
            f"Write `{_rel(cfg.rollbacks_dir, cfg.root)}/<VERSION>_rollback_<name>.sql` before the window "
            "if the change is destructive."
        )
        add("")
    add(
        "Revert the newest applied migration with its rollback script (deletes its ledger row in the same transaction):"
    )
    add("")
    add("```bash")
    add(_cmd(cfg, "migrate", "revert", "--env", env, "--dry-run") + "    # shows what would run")
    add(_cmd(cfg, "migrate", "revert", "--env", env))
    add("```")
    add("")
    add(f"To undo the whole deploy, back to version {rb.newest_applied}: section 8.3.")
    add("")
    for item in rb.items:
        if item.rollback is None:
            add(f"- `{item.migration.name}`: 🚨 **no rollback script**")
        else:
            add(f"- `{item.migration.name}`: `{_rel(item.rollback, cfg.root)}` (rehearsed on staging by the deploy)")
    add("")

    # -- deploy ------------------------------------------------------------------------------
    add("## 5. Deploy")
    add("")
    add("```bash")
    add(_cmd(cfg, "deploy", "--env", env, "--dry-run") + "    # preflight + lint + the plan; changes nothing")
    add(deploy_cmd)
    add("```")
    add("")
    add(
        "Gates, in order; the first that does not pass stops the deploy and nothing after it runs: "
        "preflight (config, both databases reachable, ledgers consistent, window open, migration lock), lint, "
        f"backup (verified), staging rehearsal on `{s.staging or 'none'}` (apply, roll back, re-apply, run again), "
        "production apply (statement by statement), "
        "report (`.safemig/deploys/*.json`, also uploaded next to the backup)."
    )
    add("")
    add(
        "Exit codes: `0` deployed or nothing to deploy, `1` a gate refused or a migration failed, "
        "`2` configuration error, "
        "`3` database or S3 failure."
    )
    add("")

    # -- monitor ---------------------------------------------------------------------------
    add("## 6. After the deploy: what to watch")
    add("")
    add(f"- [ ] `{_cmd(cfg, 'migrate', 'info', '--env', env)}` lists every version as applied.")
    add("- [ ] No session is stuck waiting for a lock (each waiter with the session that blocks it):")
    add("")
    add("  ```sql")
    for line in WAITERS_SQL.splitlines():
        add(f"  {line}")
    add("  ```")
    add("")
    add("- [ ] Every index is valid (a failed `CREATE INDEX CONCURRENTLY` leaves an invalid one):")
    add("")
    add("  ```sql")
    add("  SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid;")
    add("  ```")
    add("")
    add("- [ ] Application logs and error rates are normal (the guide: monitor application logs after migration).")
    add("- [ ] Query latency on the tables locked above is back to normal.")
    add("")

    # -- recovery --------------------------------------------------------------------------
    add("## 7. If a migration fails")
    add("")
    add(
        "`safemig deploy` names the file, the line, the statement and PostgreSQL's error. A transactional migration "
        "is rolled back entirely and leaves no ledger row; migrations applied before it in the same "
        "deploy stay applied. "
        "A `-- no-transaction` migration lists the statements that already ran."
    )
    add("")
    add(
        "1. **Read the error and the deploy record** (`.safemig/deploys/`, newest file): "
        "which gate, which migration, which statement."
    )
    add(
        f"2. **Check the connection** if the error is about reaching the database: "
        f"`psql \"{_url_variable(cfg, env)}\" -c 'SELECT 1'`."
    )
    add(
        f"3. **Inspect the ledger**: `{_cmd(cfg, 'migrate', 'info', '--env', env)}`, or in SQL "
        "`SELECT version, description, success, installed_on FROM _sqlx_migrations ORDER BY version;`"
    )
    add(
        "4. **Lock timeout** (`55P03`): another session held a conflicting lock through every retry, or the next "
        "retry would have ended after the window. The error and the record (`attempts`) name the blocking "
        "sessions (pid, application, client, state, transaction age, query). Wait for them or end them "
        "(section 8.1), then run the deploy again."
    )
    add("5. **Fix forward**: correct the SQL in a *new* migration (never edit an applied one), then deploy again.")
    add(f"6. **Roll back** the newest applied migration: `{_cmd(cfg, 'migrate', 'revert', '--env', env)}`.")
    add(
        "7. **Manual fix** (the guide's last resort): repair the schema by hand, "
        "then record the migration with its real checksum:"
    )
    add("")
    add("   ```bash")
    add(
        "   "
        + _cmd(
            cfg, "migrate", "mark-applied", "<VERSION>", "--env", env, "--reason", "'fixed by hand during the window'"
        )
    )
    add("   ```")
    add("")
    add("8. **Restore the backup** only if data is damaged: section 8.4, and read its warning first.")
    add("")
    _incidents(add, rb)
    return "\n".join(out) + "\n"


# Every session waiting for a lock, with each session that blocks it (not only the waiters).
WAITERS_SQL = """SELECT w.pid AS waiting_pid, now() - w.query_start AS waiting_for, left(w.query, 60) AS waiting_query,
       b.pid AS blocking_pid, b.application_name, b.client_addr, b.state,
       now() - b.xact_start AS blocker_in_transaction, left(b.query, 60) AS blocking_query
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)
JOIN pg_stat_activity b ON b.pid = blocker.pid
WHERE w.wait_event_type = 'Lock'
ORDER BY waiting_for DESC;"""


def _ms(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _measured_locks(add, measured: Measured, env: str) -> None:
    """The locks the recorded rehearsal took, strongest per migration and relation."""
    add("### Locks measured by the rehearsal")
    add("")
    add(
        f'Taken during deploy `{measured.record_id}`\'s rehearsal on {measured.ran_on}; "held" runs from the '
        "statement that took the lock to the migration's commit."
    )
    add("")
    shown = [lk for lk in measured.locks if lk.get("exists_on_prod", True)]
    if not shown:
        add(f"The rehearsal took no lock on a relation that exists on `{env}`.")
        add("")
        return
    add(f"| Migration | Relation | Lock | Held | Rows on `{env}` (estimate) |")
    add("| --- | --- | --- | --- | --- |")
    for lk in shown:
        rows = lk.get("prod_rows_estimate", lk.get("rows_estimate"))
        mode = str(lk.get("mode", "?"))
        strong = mode == "ACCESS EXCLUSIVE"
        if str(lk.get("method", "")).startswith("predicted"):
            mode += " (predicted: too quick to sample)"
        add(
            f"| {lk.get('version', '?')} | `{_cell(str(lk.get('relation', '?')))}` "
            f"| {f'**{mode}**' if strong else mode} "
            f"| {_ms(lk.get('held_ms'))} | {f'{rows:,}' if isinstance(rows, int) else '?'} |"
        )
    add("")


def _guarded_restore(rb: Runbook, prod_variable: str) -> str:
    """The scratch restore, refusing an empty target, prod's URL and a password in the URL (shell ``case``)."""
    restore = f'{rb.restore_command} --target-database-url "$TARGET_DATABASE_URL"'
    return "\n".join(
        [
            'case "${TARGET_DATABASE_URL:?set TARGET_DATABASE_URL to an empty scratch database}" in',
            f'  "{prod_variable}") echo "refusing: that is {rb.env}\'s database '
            f'(section 8.4 restores {rb.env})" >&2 ;;',
            '  *://*:*@*) echo "refusing: the URL holds a password; put it in PGPASSWORD or ~/.pgpass" >&2 ;;',
            f"  *) {restore} ;;",
            "esac",
        ]
    )


def _undo_all(rb: Runbook, *extra: str) -> str:
    return _cmd(rb.config, "migrate", "revert", "--env", rb.env, "--target-version", str(rb.newest_applied), *extra)


def _incidents(add, rb: Runbook) -> None:
    """Section 8: an interrupted deploy, an INVALID index, undoing the deploy, restoring prod."""
    from safemig.migrations.engine import concurrent_index_name
    from safemig.sql.split import split_statements

    cfg, env = rb.config, rb.env
    tables = sorted({lk.table for i in rb.items for lk in i.locks if not lk.table.startswith("(") and not lk.new_table})
    indexes = [
        (item.migration, name)
        for item in rb.items
        if item.migration.no_transaction
        for st in split_statements(item.migration.sql)
        if (name := concurrent_index_name(st.text))
    ]
    add("## 8. Incidents")
    add("")
    add("### 8.1 The deploy was interrupted (Ctrl-C, lost connection, CI job killed)")
    add("")
    add(
        "PostgreSQL rolls back a transactional migration whose session ends, but a session that is still alive "
        "(the client vanished while the server keeps waiting, or a `psql` left open) keeps its locks, and every "
        "query on those tables queues behind it. Find safemig's sessions and whoever holds or waits for locks on "
        "the tables of this deploy:"
    )
    add("")
    add("```sql")
    add("SELECT pid, application_name, client_addr, state, now() - xact_start AS in_transaction, left(query, 80)")
    add("FROM pg_stat_activity WHERE application_name LIKE 'safemig%';")
    add("")
    relations = ", ".join(f"to_regclass('{_sql_literal(t)}')" for t in tables) or "NULL"
    add("SELECT l.pid, a.application_name, l.relation::regclass, l.mode, l.granted,")
    add("       pg_blocking_pids(l.pid) AS blocked_by, now() - a.xact_start AS in_transaction, left(a.query, 80)")
    add("FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid")
    add(f"WHERE l.relation IN ({relations})")
    add("ORDER BY l.granted DESC, a.xact_start;")
    add("```")
    add("")
    add("End an orphaned session (its open transaction rolls back; a `-- no-transaction` statement stops where it is):")
    add("")
    add("```sql")
    add("SELECT pg_terminate_backend(<PID>);")
    add("```")
    add("")
    add(
        f"Then `{_cmd(cfg, 'migrate', 'info', '--env', env)}` shows what was applied; run the deploy again "
        "(what is applied is skipped)."
    )
    add("")
    add("### 8.2 An INVALID index left by `CREATE INDEX CONCURRENTLY`")
    add("")
    add(
        "A `CREATE INDEX CONCURRENTLY` that fails or is interrupted leaves an INVALID index: it slows every write "
        "and serves no read, and `IF NOT EXISTS` would silently accept it on the next run (safemig checks and refuses)."
    )
    add("")
    add("```sql")
    add("SELECT indexrelid::regclass AS index, indrelid::regclass AS on_table FROM pg_index WHERE NOT indisvalid;")
    if indexes:
        for migration, name in indexes:
            add(f"DROP INDEX CONCURRENTLY IF EXISTS {name};   -- left by {migration.name}? drop it, then deploy again")
    else:
        add("DROP INDEX CONCURRENTLY IF EXISTS <INDEX>;   -- then deploy again: the migration rebuilds it")
    add("-- or rebuild it in place: REINDEX INDEX CONCURRENTLY <INDEX>;")
    add("```")
    add("")
    add("### 8.3 Undo the whole deploy")
    add("")
    add(
        f"Run the rollback scripts of every migration it applied, newest first, back to version {rb.newest_applied} "
        "(each deletes its ledger row in the same transaction):"
    )
    add("")
    add("```bash")
    add(_undo_all(rb, "--dry-run"))
    add(_undo_all(rb))
    add("```")
    add("")
    add("### 8.4 Restore prod itself (last resort)")
    add("")
    add("> [!CAUTION]")
    add(
        "> A logical restore puts the database back to the moment the dump began: **every write made since the "
        "dump began is lost** (orders, sign-ups, payments, anything the application stored during and after the "
        "deploy). Prefer section 8.3 or a fix forward. If you must restore, stop the application's writes first "
        "and export what was written since the backup if you need it."
    )
    add("")
    add(
        "`--clean` drops and recreates the objects the backup contains; objects created after it (by this deploy) "
        "stay, so undo the deploy first (8.3) or drop them. safemig reads prod's URL from the config, so no "
        "password is typed:"
    )
    add("")
    add("```bash")
    add(f"{rb.restore_command} --clean --confirm-clean")
    add("```")
    add("")


def _sql_literal(name: str) -> str:
    return name.replace("'", "''")
