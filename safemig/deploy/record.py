"""The deploy record: who deployed what, where, through which gates, with which backup.

Every deploy that gets past reading its configuration leaves one JSON record, also a
failed one (saying at which gate and why): in ``.safemig/deploys/<timestamp>.json`` of the
project, and, once a backup exists, uploaded next to it in S3 so the record and the dump it
refers to stay together. The JSON is redacted like everything else safemig writes.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safemig import __version__
from safemig.redact import redact, redact_data

RECORDS_DIR = Path(".safemig") / "deploys"

# CI systems' variables naming the person (or bot) that triggered the job.
_CI_ACTOR_VARS = (
    "GITHUB_ACTOR",
    "GITLAB_USER_LOGIN",
    "BUILDKITE_BUILD_CREATOR",
    "CIRCLE_USERNAME",
    "BITBUCKET_STEP_TRIGGERER_UUID",
)


def who() -> dict[str, str | None]:
    """The operator: login name, host and, under CI, the actor that triggered the job."""
    user: str | None
    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers with an unnamed uid)
        user = str(os.getuid()) if hasattr(os, "getuid") else None
    actor = next((os.environ[v] for v in _CI_ACTOR_VARS if os.environ.get(v)), None)
    return {"user": user, "host": socket.gethostname(), "ci_actor": actor}


def git_state(root: Path) -> dict[str, Any] | None:
    """Commit, branch and whether the tree has uncommitted changes; None outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": branch, "dirty": bool(status)}


def timestamp(moment: datetime) -> str:
    """A file-name-safe UTC timestamp that sorts in time order: ``20261124T082512.345Z``."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y%m%dT%H%M%S}.{utc.microsecond // 1000:03d}Z"


@dataclass
class DeployRecord:
    """Everything worth keeping about one deploy; :meth:`as_dict` is the JSON written."""

    env: str
    started_at: datetime
    status: str = "running"
    staging_env: str | None = None
    database: str = ""
    staging_database: str | None = None
    dry_run: bool = False
    operator: dict[str, Any] = field(default_factory=who)
    git: dict[str, Any] | None = None
    window: dict[str, Any] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)
    failed_gate: str | None = None
    error: str | None = None
    hint: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    backup: dict[str, Any] | None = None
    applied: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every production attempt, blockers named
    rehearsal: dict[str, Any] = field(default_factory=dict)
    locks: list[dict[str, Any]] = field(default_factory=list)
    finished_at: datetime | None = None
    record_uri: str | None = None

    @property
    def id(self) -> str:
        return timestamp(self.started_at)

    def as_dict(self) -> dict[str, Any]:
        finished = self.finished_at or datetime.now(UTC)
        return {
            "safemig_version": __version__,
            "id": self.id,
            "env": self.env,
            "status": self.status,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": round((finished - self.started_at).total_seconds(), 3),
            "operator": self.operator,
            "git": self.git,
            "database": self.database,
            "staging_env": self.staging_env,
            "staging_database": self.staging_database,
            "window": self.window,
            "failed_gate": self.failed_gate,
            "error": self.error,
            "hint": self.hint,
            "gates": self.gates,
            "pending": self.pending,
            "backup": self.backup,
            "applied": self.applied,
            "attempts": self.attempts,
            "rehearsal": self.rehearsal,
            "locks": self.locks,
            "record_uri": self.record_uri,
        }

    def to_json(self) -> str:
        return (
            json.dumps(redact_data(self.as_dict()), indent=2, ensure_ascii=False, default=lambda o: redact(str(o)))
            + "\n"
        )


def write_record(record: DeployRecord, root: Path) -> Path:
    """Write the record under ``root/.safemig/deploys/`` (never overwriting another) and return its path."""
    directory = root / RECORDS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    body = record.to_json()
    for attempt in range(100):
        name = f"{record.id}.json" if attempt == 0 else f"{record.id}-{attempt}.json"
        path = directory / name
        try:
            with path.open("x", encoding="utf-8") as fh:  # two deploys in the same second keep both records
                fh.write(body)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot find a free record name in {directory}")  # pragma: no cover


def read_records(root: Path) -> list[dict[str, Any]]:
    """Every deploy record of the project, oldest first (for tests and tooling)."""
    directory = root / RECORDS_DIR
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]
