"""Fixtures for the backup tests: a project directory whose config points at a bucket."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from safemig.config import load_config


def write_config(root: Path, bucket: str, **backup: object) -> Path:
    """A safemig.toml with env ``prod`` reading ``$PROD_DATABASE_URL`` and a ``[backup]`` table."""
    lines = ["[envs.prod]", 'database_url = "${PROD_DATABASE_URL}"', "", "[backup]", f'bucket = "{bucket}"', 'prefix = "forgeerp/"']
    for key, value in backup.items():
        lines.append(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {str(value).lower() if isinstance(value, bool) else value}")
    path = root / "safemig.toml"
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


def fill(url: str, rows: int = 2000, sqlx: bool = True) -> None:
    """Give a database some schema, rows of hard-to-compress text, and an sqlx ledger."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, tenant text NOT NULL, payload text)")
        conn.execute(
            "INSERT INTO events SELECT i, 'tenant-' || (i %% 7), md5(i::text) || md5((i * 31)::text) || md5(random()::text)"
            " FROM generate_series(1, %s) AS i",
            (rows,),
        )
        conn.execute("CREATE INDEX events_tenant ON events (tenant)")
        if sqlx:
            conn.execute(
                "CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,"
                " installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL,"
                " execution_time bigint NOT NULL)"
            )
            conn.execute(
                "INSERT INTO _sqlx_migrations VALUES (1, 'create events', now(), true, '\\x00', 1),"
                " (2, 'add index', now(), true, '\\x00', 1), (3, 'failed one', now(), false, '\\x00', 1)"
            )


@pytest.fixture
def bucket_name() -> str:
    return "backups-" + uuid.uuid4().hex[:10]


@pytest.fixture
def s3(bucket_name):
    """moto in-process, with the project's bucket created."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=bucket_name)
        yield client


@pytest.fixture
def project(tmp_path, bucket_name, database_url, monkeypatch):
    """A project dir (cwd) with safemig.toml; prod's database has data and version 2 applied."""
    fill(database_url)
    write_config(tmp_path, bucket_name, part_size_mb=5)
    monkeypatch.setenv("PROD_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def config(project):
    return load_config(project / "safemig.toml")


def snapshot(url: str) -> list[tuple]:
    """Every row of ``events``, in order: what a faithful restore must reproduce."""
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, tenant, payload FROM events ORDER BY id").fetchall()


def children_named(ppid: int, name: str) -> list[int]:
    """PIDs of the processes called ``name`` whose parent is ``ppid`` (from /proc)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                head, tail = fh.read().rsplit(")", 1)
            comm, parent = head.split("(", 1)[1], int(tail.split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if comm == name and parent == ppid:
            found.append(int(entry))
    return found
