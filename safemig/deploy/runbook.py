"""``safemig runbook``: the maintenance-window runbook for the pending deploy, in Markdown.

Everything a person on call needs during the window, filled in for this env and these
migrations rather than written as a generic checklist: when the window is and a notice
to send, what will run (with lint verdicts and the table locks each statement is
expected to take), the exact backup/restore commands, each migration's rollback script
(the missing ones marked loudly), the deploy command, what to watch afterwards, and the
guide's troubleshooting steps as real commands. GitHub renders it as it is.

:func:`build_runbook` gathers the facts (it reads prod's ledger, read-only, without the
migration lock); :func:`render_markdown` only formats them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from safemig.config import Config, EnvSettings, resolve_database_url
from safemig.deploy.expectations import LockExpectation, expected_locks
from safemig.deploy.settings import deploy_settings
from safemig.errors import SafemigError
from safemig.migrations.files import Migration, discover, find_rollback
from safemig.redact import mask_url
from safemig.window import WindowStatus, evaluate, format_local


@dataclass
class RunbookItem:
    """One pending migration with what the runbook says about it."""

    migration: Migration
    rollback: Path | None
    lint_errors: list[str] = field(default_factory=list)
    lint_warnings: list[str] = field(default_factory=list)
    locks: list[LockExpectation] = field(default_factory=list)


@dataclass
class Runbook:
    """The facts a runbook is rendered from."""

    config: Config
    env: str
    settings: EnvSettings
    database: str
    generated_at: datetime
    window: WindowStatus
    items: list[RunbookItem]
    applied_count: int
    backup_destination: str
    restore_command: str
    git: dict | None = None


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
    migrations = discover(config.migrations_dir)
    with db.connect(url, autocommit=True, application_name="safemig runbook") as conn:
        rows = ledger.applied_rows(conn)
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
    try:
        from safemig.backup import restore_command

        restore = restore_command(config, env, "<BACKUP_URI>")
    except SafemigError:
        restore = f"safemig restore --env {env} --from <BACKUP_URI>"
    return Runbook(
        config=config,
        env=env,
        settings=settings,
        database=mask_url(url),
        generated_at=now or datetime.now(UTC),
        window=evaluate(settings.maintenance_window, now),
        items=items,
        applied_count=sum(1 for r in rows.values() if r.success),
        backup_destination=destination,
        restore_command=restore,
        git=git_state(config.root),
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
    template = config.env(env).database_url
    raw = template.text if template else None
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
        f"{s.lock_retries} retries on lock timeout (backoff {s.retry_backoff.seconds:g}s, doubling) |"
    )
    add(f"| Backups go to | `{rb.backup_destination}` |")
    add("")

    if not rb.items:
        add(
            f"> [!NOTE]\n> Nothing to deploy: every migration in `{_rel(cfg.migrations_dir, cfg.root)}` is applied on `{env}`."
        )
        add("")
        return "\n".join(out) + "\n"

    # -- window and notice ---------------------------------------------------------------
    add("## 1. Maintenance window and communication")
    add("")
    if s.maintenance_window:
        add("Configured window(s): " + ", ".join(f"`{w.text}`" for w in s.maintenance_window) + ".")
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
    add("Short pauses of requests touching the affected tables are possible while locks are held;")
    add("no data loss is expected, and a verified backup is taken first.")
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
    add("| Version | File | Transaction | Lint | Rollback |")
    add("| --- | --- | --- | --- | --- |")
    for item in rb.items:
        m = item.migration
        lint = (
            ("❌ " + f"{len(item.lint_errors)} error(s)")
            if item.lint_errors
            else ("⚠️ " + f"{len(item.lint_warnings)} warning(s)" if item.lint_warnings else "✅ clean")
        )
        rollback = f"`{_rel(item.rollback, cfg.root)}`" if item.rollback else "🚨 **NONE**"
        add(
            f"| {m.version} | `{_rel(m.path, cfg.root)}` | {'no (`-- no-transaction`)' if m.no_transaction else 'yes'} | {lint} | {rollback} |"
        )
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

    add("### Expected locks")
    add("")
    add(
        "Predicted from the SQL (PostgreSQL's documented lock levels). In a transactional migration every "
        "lock is held until the migration commits. The staging rehearsal of `safemig deploy` records the "
        "locks actually taken; check its report before the production gate."
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
                f"| {item.migration.version} | {lk.line} | `{_cell(lk.statement[:60])}` | `{_cell(lk.table)}` | {mode} | {_cell(blocks)} |"
            )
    else:
        add("No statement is expected to lock an existing table.")
    add("")

    # -- backup and restore ----------------------------------------------------------------
    add("## 3. Backup and restore")
    add("")
    add(
        "`safemig deploy` takes and verifies the backup itself (gate 3) and prints its `s3://` URI; it is also in the deploy record. "
        "To take one by hand:"
    )
    add("")
    add("```bash")
    add(_cmd(cfg, "backup", "--env", env, "--label", "before-maintenance"))
    add(_cmd(cfg, "backups", "--env", env) + "    # list them, newest first")
    add("```")
    add("")
    add("Restore (into a scratch database first, to check it; replace `<BACKUP_URI>` with the URI the deploy printed):")
    add("")
    add("```bash")
    add(rb.restore_command)
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
            + " means restoring the backup. "
            f"Write `{_rel(cfg.rollbacks_dir, cfg.root)}/<VERSION>_rollback_<name>.sql` before the window if the change is destructive."
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
        f"production apply (statement by statement), report (`.safemig/deploys/*.json`, also uploaded next to the backup)."
    )
    add("")
    add(
        "Exit codes: `0` deployed or nothing to deploy, `1` a gate refused or a migration failed, `2` configuration error, "
        "`3` database or S3 failure."
    )
    add("")

    # -- monitor ---------------------------------------------------------------------------
    add("## 6. After the deploy: what to watch")
    add("")
    add(f"- [ ] `{_cmd(cfg, 'migrate', 'info', '--env', env)}` lists every version as applied.")
    add("- [ ] No session is stuck waiting for a lock:")
    add("")
    add("  ```sql")
    add("  SELECT pid, wait_event_type, state, now() - query_start AS waiting, left(query, 80)")
    add("  FROM pg_stat_activity WHERE wait_event_type = 'Lock';")
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
        "is rolled back entirely and leaves no ledger row; migrations applied before it in the same deploy stay applied. "
        "A `-- no-transaction` migration lists the statements that already ran."
    )
    add("")
    add(
        "1. **Read the error and the deploy record** (`.safemig/deploys/`, newest file): which gate, which migration, which statement."
    )
    add(
        f"2. **Check the connection** if the error is about reaching the database: `psql \"{_url_variable(cfg, env)}\" -c 'SELECT 1'`."
    )
    add(
        f"3. **Inspect the ledger**: `{_cmd(cfg, 'migrate', 'info', '--env', env)}`, or in SQL "
        "`SELECT version, description, success, installed_on FROM _sqlx_migrations ORDER BY version;`"
    )
    add(
        "4. **Lock timeout** (`55P03`): another session held a conflicting lock through every retry. Find it with the "
        "`pg_stat_activity` query above, wait for it or stop it, then run the deploy again."
    )
    add("5. **Fix forward**: correct the SQL in a *new* migration (never edit an applied one), then deploy again.")
    add(f"6. **Roll back** the newest applied migration: `{_cmd(cfg, 'migrate', 'revert', '--env', env)}`.")
    add(
        "7. **Manual fix** (the guide's last resort): repair the schema by hand, then record the migration with its real checksum:"
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
    add(f"8. **Restore the backup** if data is damaged: `{rb.restore_command}`")
    add("")
    return "\n".join(out) + "\n"
