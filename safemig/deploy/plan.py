"""The one plan builder: what a deploy would do, for ``safemig deploy --dry-run`` and ``safemig runbook``.

Both show the same thing, so both build it here: where the backup goes, where and how
the rehearsal runs, which migrations are applied in which order and how each is undone.
:func:`build_plan` takes the deploy's frozen context (the dry run); :func:`read_plan`
reads what it needs itself with one short read-only connection to prod (the runbook,
which takes no lock and opens no staging connection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from safemig.config import Config, EnvSettings
from safemig.deploy.context import DeployContext, rel
from safemig.migrations.files import Migration
from safemig.redact import mask_url
from safemig.window import WindowStatus


@dataclass(frozen=True)
class PlanItem:
    """One pending migration as the plan (``--dry-run``) and the runbook show it."""

    migration: Migration
    rollback: Path | None

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "version": self.migration.version,
            "file": rel(self.migration.path, root),
            "description": self.migration.description,
            "transaction": not self.migration.no_transaction,
            "rollback": rel(self.rollback, root) if self.rollback else None,
        }


@dataclass
class DeployPlan:
    """What a deploy would do: back up where, rehearse where, apply what in which order, undo it how."""

    env: str
    staging: str | None
    database: str
    backup_destination: str
    rehearsal: str = "restore"  # "restore", "staging" or "none"
    rehearsal_data: str = "touched"
    items: list[PlanItem] = field(default_factory=list)
    window: str = ""

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "env": self.env,
            "dry_run": True,
            "database": self.database,
            "staging": self.staging,
            "rehearsal": self.rehearsal,
            "rehearsal_data": self.rehearsal_data,
            "window": self.window,
            "backup_destination": self.backup_destination,
            "pending": [item.as_dict(root) for item in self.items],
        }

    def rehearsal_step(self) -> str:
        """One line saying where the rehearsal runs."""
        if self.rehearsal == "none" or not self.staging:
            return 'no staging rehearsal (staging = "none")'
        steps = "apply, roll back (schema compared) and re-apply, run again (idempotency)"
        if self.rehearsal == "restore":
            data = "all data" if self.rehearsal_data == "all" else "the data of the tables the migrations touch"
            return (
                f"restore that backup (schema and {data}) into a scratch database on {self.staging}'s server; "
                f"{steps}; drop it"
            )
        return f"rehearse on {self.staging}: compare its schema with {self.env}'s, align with {self.env}, {steps}"


def backup_destination(config: Config, env: str) -> str:
    """``s3://bucket/prefix/env/``: where the backup gate will write (for the plan and runbook)."""
    from safemig.backup.settings import load_settings

    settings = load_settings(config)
    return f"s3://{settings.bucket}/{settings.env_prefix(env)}"


def _plan(
    *,
    env: str,
    settings: EnvSettings,
    prod_url: str,
    destination: str,
    pending: list[Migration] | tuple[Migration, ...],
    rollbacks: dict[int, Path | None],
    window: WindowStatus | None,
) -> DeployPlan:
    return DeployPlan(
        env=env,
        staging=settings.staging,
        database=mask_url(prod_url),
        backup_destination=destination,
        rehearsal=settings.rehearsal if settings.staging else "none",
        rehearsal_data=settings.rehearsal_data,
        items=[PlanItem(m, rollbacks.get(m.version)) for m in pending],
        window=window.describe() if window else "",
    )


def build_plan(ctx: DeployContext) -> DeployPlan:
    """The plan of the deploy preflight prepared (``--dry-run``)."""
    return _plan(
        env=ctx.env,
        settings=ctx.settings,
        prod_url=ctx.prod_url,
        destination=ctx.backup_destination,
        pending=ctx.pending,
        rollbacks=ctx.rollbacks,
        window=ctx.window,
    )


@dataclass(frozen=True)
class ProdReading:
    """What :func:`read_plan` read from prod besides the plan, on the same short connection."""

    settings: EnvSettings
    rows: dict[int, Any]  # prod's ledger rows (the runbook counts what is applied)
    server_major: int  # the lint target: prod's major
    relations: frozenset[str]  # names of prod's tables, views and materialized views
    window: WindowStatus


def read_plan(config: Config, env: str, *, now: datetime | None = None) -> tuple[DeployPlan, ProdReading]:
    """The plan for ``env`` read with one short connection to prod (no lock): for the runbook.

    Returns the plan and what else the runbook needs from prod (ledger rows, server major,
    existing relations), so the runbook builds on exactly the plan a dry run shows.
    """
    from safemig import db
    from safemig.config import resolve_database_url
    from safemig.deploy.settings import deploy_settings
    from safemig.errors import SafemigError
    from safemig.migrations import ledger
    from safemig.migrations.files import discover, find_rollback
    from safemig.window import evaluate

    settings = deploy_settings(config, env)
    url = resolve_database_url(config, env=env)
    migrations = discover(config.migrations_dir, ignored_chars=config.sqlx.ignored_chars)
    with db.connect(url, autocommit=True, application_name="safemig runbook") as conn:
        rows = ledger.applied_rows(conn, config.sqlx.table)
        pending = ledger.check(migrations, rows)
        server_major = conn.info.server_version // 10000
        relations = frozenset(
            name for (name,) in conn.execute("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p', 'm', 'v')")
        )
    try:
        destination = backup_destination(config, env)
    except SafemigError as exc:
        destination = f"(not configured: {exc.message})"
    window = evaluate(settings.maintenance_window, now)
    plan = _plan(
        env=env,
        settings=settings,
        prod_url=url,
        destination=destination,
        pending=pending,
        rollbacks={m.version: find_rollback(m, config.rollbacks_dir) for m in pending},
        window=window,
    )
    return plan, ProdReading(settings, rows, server_major, relations, window)
