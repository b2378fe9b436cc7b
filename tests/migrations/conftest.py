"""Helpers for the migration tests: a project directory with migration files, a connection."""

from __future__ import annotations

from pathlib import Path

import pytest


class Project:
    """A throwaway project: ``docker/migrations`` and ``rollbacks`` under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.migrations = root / "docker" / "migrations"
        self.rollbacks = root / "rollbacks"
        self.migrations.mkdir(parents=True)
        self.rollbacks.mkdir()

    def write(self, name: str, sql: str | bytes) -> Path:
        path = self.migrations / name
        path.write_bytes(sql if isinstance(sql, bytes) else sql.encode("utf-8"))
        return path

    def rollback(self, name: str, sql: str) -> Path:
        path = self.rollbacks / name
        path.write_text(sql, encoding="utf-8")
        return path

    def discover(self):
        from safemig.migrations.files import discover

        return discover(self.migrations)


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path / "project")


@pytest.fixture
def conn(database_url):
    """An autocommit connection to the test's fresh database."""
    from safemig.db import connect

    connection = connect(database_url, autocommit=True)
    yield connection
    connection.close()


def scalar(url_or_conn, sql: str, params=None):
    """First column of the first row (opens a short connection when given a URL)."""
    import psycopg

    if isinstance(url_or_conn, str):
        with psycopg.connect(url_or_conn, autocommit=True) as c:
            return c.execute(sql, params).fetchone()[0]
    return url_or_conn.execute(sql, params).fetchone()[0]
