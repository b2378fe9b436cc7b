"""Shared helpers for the tests of the files users copy: the Dockerfile, compose.yaml, the
entrypoint, scripts/migrate.sh and the GitHub workflow examples.

The tools (check-jsonschema, hadolint, shellcheck) are test dependencies in the lock; they are
looked up next to the interpreter running the suite first (the project venv), so the suite runs
with or without the venv activated. A missing tool is a failure, not a skip: CI must check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
SAMPLE_MIGRATIONS = REPO_ROOT / "docker" / "migrations"
SAMPLE_ROLLBACKS = REPO_ROOT / "rollbacks"


def tool(name: str) -> str:
    """Path of an installed command-line tool; fails the test when it is not installed."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it is a test dependency (./scripts/bootstrap installs the lock)")
    return found


def run(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    """Run a command with this process's environment plus ``env``; output captured as text."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        args, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def path_with_venv(first: Path | None = None) -> str:
    """A PATH on which ``safemig`` is this suite's (editable) install, optionally after ``first``."""
    parts = [str(first)] if first else []
    parts += [str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")]
    return os.pathsep.join(parts)


def ledger_versions(url: str) -> list[int]:
    """Successfully applied versions in ``_sqlx_migrations`` (empty when the table does not exist)."""
    import psycopg

    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        return [row[0] for row in conn.execute("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")]


@pytest.fixture
def sample_project(tmp_path: Path) -> Path:
    """A user repository: the guide's sample migrations and rollbacks, and nothing else."""
    root = tmp_path / "project"
    shutil.copytree(SAMPLE_MIGRATIONS, root / "docker" / "migrations")
    shutil.copytree(SAMPLE_ROLLBACKS, root / "rollbacks")
    return root
