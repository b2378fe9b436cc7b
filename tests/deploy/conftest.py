"""A throw-away project for deploy tests: prod on pg_cluster, staging on pg_cluster_b, S3 on moto's server.

``project`` writes ``safemig.toml`` (URLs from environment variables, as real configs do),
three lint-clean migrations with rollback scripts (one ``-- no-transaction``), creates a
fresh bucket and runs ``safemig`` as a subprocess in that directory.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

MIGRATIONS = {
    "001_create_items.sql": "CREATE TABLE IF NOT EXISTS items (id BIGINT PRIMARY KEY, name TEXT);\n",
    "002_add_note.sql": "-- Adds a note to every item\nALTER TABLE items ADD COLUMN IF NOT EXISTS note TEXT;\n",
    "003_index_name.sql": "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_items_name ON items (name);\n",
}
ROLLBACKS = {
    "001_rollback_items.sql": "DROP TABLE IF EXISTS items;\n",
    "002_rollback_note.sql": "ALTER TABLE items DROP COLUMN IF EXISTS note;\n",
    "003_rollback_index.sql": "-- no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS idx_items_name;\n",
}

PROD_SETTINGS = {
    "staging": '"staging"',
    "lock_timeout": '"5s"',
    "lock_retries": "3",
    "retry_backoff": '"0.2s"',
}


@dataclass
class Project:
    root: Path
    prod_url: str
    staging_url: str
    bucket: str
    s3: object
    run_cli: object
    prod_settings: dict[str, str] = field(default_factory=lambda: dict(PROD_SETTINGS))

    @property
    def env(self) -> dict[str, str]:
        return {**self.s3.env, "PROD_DATABASE_URL": self.prod_url, "STAGING_DATABASE_URL": self.staging_url}

    def write_config(self, **prod_overrides: str) -> None:
        """Rewrite safemig.toml; keyword arguments are raw TOML values for [envs.prod]."""
        settings = {**self.prod_settings, **prod_overrides}
        prod = "".join(f"{k} = {v}\n" for k, v in settings.items() if v is not None)
        (self.root / "safemig.toml").write_text(
            '[envs.staging]\ndatabase_url = "${STAGING_DATABASE_URL}"\nstaging = "none"\n\n'
            f'[envs.prod]\ndatabase_url = "${{PROD_DATABASE_URL}}"\n{prod}\n'
            f'[backup]\nbucket = "{self.bucket}"\nprefix = "t/"\n'
        )

    def migration(self, name: str, sql: str) -> Path:
        path = self.root / "docker" / "migrations" / name
        path.write_text(sql)
        return path

    def rollback(self, name: str, sql: str) -> Path:
        path = self.root / "rollbacks" / name
        path.write_text(sql)
        return path

    def run(self, *args: str, timeout: float = 120):
        return self.run_cli(*args, cwd=self.root, env=self.env, timeout=timeout)

    def deploy(self, *args: str, timeout: float = 120):
        return self.run("deploy", "--env", "prod", *args, timeout=timeout)

    def records(self) -> list[dict]:
        directory = self.root / ".safemig" / "deploys"
        return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []

    def query(self, url: str, sql: str) -> list[tuple]:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def versions(self, url: str) -> list[int]:
        exists = self.query(url, "SELECT to_regclass('_sqlx_migrations') IS NOT NULL")[0][0]
        if not exists:
            return []
        return [row[0] for row in self.query(url, "SELECT version FROM _sqlx_migrations ORDER BY version")]

    def columns(self, url: str, table: str) -> list[str]:
        return [r[0] for r in self.query(url, f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position")]

    def s3_keys(self) -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3.endpoint_url, **_creds(self.s3))
        return [o["Key"] for o in client.list_objects_v2(Bucket=self.bucket).get("Contents", [])]

    def s3_get(self, key: str) -> bytes:
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3.endpoint_url, **_creds(self.s3))
        return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def apply_directly(self, url: str, versions: list[int]) -> None:
        """Bring a database to ``versions`` with the core engine (test set-up, not under test here)."""
        from safemig.migrations.engine import Migrator
        from safemig.migrations.files import discover

        migrations = discover(self.root / "docker" / "migrations")
        with psycopg.connect(url, autocommit=True) as conn:
            migrator = Migrator(conn, migrations, rollbacks_dir=self.root / "rollbacks")
            for m in migrations:
                if m.version in versions:
                    migrator.apply(m)


def _creds(s3) -> dict[str, str]:
    return {
        "aws_access_key_id": s3.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": s3.env["AWS_SECRET_ACCESS_KEY"],
        "region_name": s3.env["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def project(tmp_path, database_url, database_url_b, local_s3, cli_process) -> Project:
    import boto3

    bucket = f"deploy-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=local_s3.endpoint_url, **_creds(local_s3)).create_bucket(Bucket=bucket)
    root = tmp_path / "project"
    (root / "docker" / "migrations").mkdir(parents=True)
    (root / "rollbacks").mkdir()
    proj = Project(root=root, prod_url=database_url, staging_url=database_url_b, bucket=bucket, s3=local_s3, run_cli=cli_process)
    for name, sql in MIGRATIONS.items():
        proj.migration(name, sql)
    for name, sql in ROLLBACKS.items():
        proj.rollback(name, sql)
    proj.write_config()
    return proj
