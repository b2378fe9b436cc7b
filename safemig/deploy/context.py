"""The deploy's inputs, decided once: the options of this run and the frozen context preflight builds.

Preflight reads the settings, resolves the URLs, opens (and locks) the connections,
reads the migrations, their rollbacks and prod's ledger, and judges the window; what it
found is one :class:`DeployContext` that no later gate changes. Each later gate is a
function of that context (and of the outputs of the gates before it) that returns its
own output, so what a gate may depend on is visible in its signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from safemig.config import Config, EnvSettings
from safemig.migrations.files import Migration
from safemig.window import WindowStatus

if TYPE_CHECKING:  # pragma: no cover
    import psycopg


@dataclass(frozen=True)
class DeployOptions:
    """How this run may differ from the plain ``safemig deploy --env NAME``."""

    dry_run: bool = False
    outside_window: bool = False
    reason: str | None = None
    lock_wait_s: float = 0.0  # 0: refuse at once when another migrator holds the lock
    allow_out_of_order: bool = False
    keep_rehearsal: bool = False  # leave the restore-mode rehearsal database in place
    now: datetime | None = None  # the clock the window is judged by (tests)


@dataclass(frozen=True)
class DeployContext:
    """Everything preflight established; read-only for every later gate."""

    config: Config
    env: str
    options: DeployOptions
    settings: EnvSettings
    started_at: datetime
    prod_url: str
    staging_url: str | None
    prod: psycopg.Connection
    staging: psycopg.Connection | None
    migrations: tuple[Migration, ...]
    rollbacks: dict[int, Path | None]
    pending: tuple[Migration, ...]
    prod_applied: frozenset[int]
    window: WindowStatus | None
    backup_destination: str

    @property
    def deadline(self) -> datetime | None:
        """When the open maintenance window closes (None: no window, or deploying outside it)."""
        if self.window is not None and self.window.open and self.window.current is not None:
            return self.window.current[2]
        return None


def rel(path: Path | None, root: Path) -> str:
    """``path`` relative to the project root when it is below it (as the record and plan show files)."""
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
