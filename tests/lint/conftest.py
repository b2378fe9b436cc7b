"""Helpers for lint tests: a throw-away project (safemig.toml, migrations/, rollbacks/) and rule examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safemig.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILE = "migrations/005_add_example.sql"
_FILE_MARK = re.compile(r"^-- file: (\S+)\s*$", re.MULTILINE)


def example_files(example: str) -> dict[str, str]:
    """Split a rule docstring example into files: ``-- file: PATH`` lines start a new file."""
    parts = _FILE_MARK.split(example)
    files: dict[str, str] = {}
    if parts[0].strip():
        files[DEFAULT_FILE] = parts[0].strip() + "\n"
    for path, body in zip(parts[1::2], parts[2::2]):
        files[path] = body.strip() + "\n"
    return files


class Project:
    """A directory with safemig.toml, migrations/ and rollbacks/, as a user's repository would have."""

    def __init__(self, root: Path, extra_config: str = "") -> None:
        self.root = root
        (root / "migrations").mkdir(parents=True, exist_ok=True)
        (root / "rollbacks").mkdir(exist_ok=True)
        self.write("safemig.toml", 'migrations_dir = "migrations"\nrollbacks_dir = "rollbacks"\n' + extra_config)

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def config(self):
        return load_config(cwd=self.root)

    def lint(self, *relatives: str, use_cache: bool = False):
        from safemig.lint import lint_paths

        paths = [self.root / r for r in relatives] or [self.root / "migrations"]
        return lint_paths(paths, self.config(), use_cache=use_cache)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    """A fresh project; the working directory is its root so paths print as migrations/..."""
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)


@pytest.fixture
def house_project(tmp_path, monkeypatch) -> Project:
    """A fresh project that uses this repository's house rules (rules/*.py)."""
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path, f'\n[lint]\nhouse_rules = "{REPO_ROOT / "rules"}"\n')


def rules_of(report, rule_id: str | None = None) -> list:
    return [f for f in report.findings if rule_id is None or f.rule == rule_id]
