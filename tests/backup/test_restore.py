"""`safemig restore` and the small helpers deploy uses, on real PostgreSQL and moto in-process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from safemig.backup import put_next_to, restore_backup, restore_command, run_backup
from safemig.errors import CheckFailed, UsageError
from tests.backup.conftest import snapshot, write_config
from safemig.config import load_config


def table_exists(url: str, name: str = "events") -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def tamper(client, bucket: str, key: str) -> None:
    """Change one character of row data, keeping the recorded metadata: pg_restore alone would accept it."""
    head = client.head_object(Bucket=bucket, Key=key)
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    at = body.find(b"tenant-3")
    assert at > 0, "uncompressed dump expected"
    body[at + 7 : at + 8] = b"4"
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=head["Metadata"])


def test_object_changed_in_storage_is_refused_and_restores_nothing(project, bucket_name, database_url, database_url_b, s3, cli):
    write_config(project, bucket_name, compression=0)
    config = load_config(project / "safemig.toml")
    result = run_backup(config, "prod", database_url=database_url)
    tamper(s3, bucket_name, result.key)  # a new ETag: the manifest no longer describes the object

    with pytest.raises(CheckFailed) as caught:
        restore_backup(config, "prod", source=result.uri, target_url=database_url_b)
    assert "is not what was recorded at backup time" in caught.value.message and "nothing was restored" in caught.value.message
    assert not table_exists(database_url_b)

    via_cli = cli("restore", "--env", "prod", "--from", "latest", "--target-database-url", database_url_b)
    assert via_cli.exit_code == 1 and "differs from the recorded" in via_cli.stderr
    assert "local-secret-pw" not in via_cli.output
    listing = cli("backups", "--env", "prod")
    assert "INCONSISTENT" in listing.stdout


def corrupt_downloads(monkeypatch, at_fraction: float = 0.5) -> None:
    """Every GetObject of a .dump returns its bytes with one byte flipped (a store damaging data)."""
    import io

    from botocore.response import StreamingBody

    import safemig.backup.restore as restore_module

    real_make_client = restore_module.make_client

    def corrupting_client(settings):
        client = real_make_client(settings)

        def flip_a_byte(http_response, parsed, model, **_):
            body = parsed.get("Body")
            if body is None or parsed.get("ContentLength", 0) < 100_000:
                return  # the manifest, the roles, the TOC read: left alone
            data = bytearray(body.read())
            data[int(len(data) * at_fraction)] ^= 0xFF
            parsed["Body"] = StreamingBody(io.BytesIO(bytes(data)), len(data))

        client.meta.events.register("after-call.s3.GetObject", flip_a_byte)
        return client

    monkeypatch.setattr(restore_module, "make_client", corrupting_client)


@pytest.mark.parametrize("jobs", [1, 2])
def test_bytes_damaged_mid_stream_are_refused_with_exit_1_and_nothing_committed(project, bucket_name, database_url, database_url_b, s3, monkeypatch, jobs):
    """A damaged byte mid-object (compressed: pg_restore itself fails first): exit 1, not "pg_restore failed, retry"."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) AS t FROM generate_series(1, 60000) AS i")
    config = load_config(project / "safemig.toml")
    result = run_backup(config, "prod", database_url=database_url)
    assert result.size > 1_000_000
    corrupt_downloads(monkeypatch)
    with pytest.raises(CheckFailed) as caught:
        restore_backup(config, "prod", source=result.uri, target_url=database_url_b, jobs=jobs)
    assert caught.value.exit_code == 1
    assert "does not match its recorded checksum" in caught.value.message and "nothing was restored" in caught.value.message
    assert not table_exists(database_url_b) and not table_exists(database_url_b, "bulk")


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_byte_damaged_in_the_header_is_damage_exit_1_not_an_unreadable_archive(
    project, bucket_name, database_url, database_url_b, s3, monkeypatch, jobs
):
    """Damage where the TOC is (with 7,000 tables it is most of the object) stops ``pg_restore --list``
    before any data: the checksum still decides, exit 1 and nothing restored, not exit 3."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) AS t FROM generate_series(1, 60000) AS i")
    config = load_config(project / "safemig.toml")
    result = run_backup(config, "prod", database_url=database_url)
    corrupt_downloads(monkeypatch, at_fraction=5.5 / result.size)  # byte 5: the format version after "PGDMP"
    with pytest.raises(CheckFailed) as caught:
        restore_backup(config, "prod", source=result.uri, target_url=database_url_b, jobs=jobs)
    assert caught.value.exit_code == 1
    assert "does not match its recorded checksum" in caught.value.message and "nothing was restored" in caught.value.message
    assert not table_exists(database_url_b) and not table_exists(database_url_b, "bulk")


@pytest.mark.parametrize("at_fraction", [0.3, 0.97])
def test_streamed_verify_after_hashes_the_whole_object_and_refuses_damage_pg_restore_never_read(
    project, bucket_name, database_url, database_url_b, s3, monkeypatch, at_fraction
):
    """verify_before_commit=False with data left out: pg_restore may stop early and commit, but the
    rest of the object is still hashed; a damaged byte anywhere is exit 1, naming the target as
    restored into (its owner drops it)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) AS t FROM generate_series(1, 60000) AS i")
    config = load_config(project / "safemig.toml")
    result = run_backup(config, "prod", database_url=database_url)
    corrupt_downloads(monkeypatch, at_fraction)

    def without_bulk_rows(lines: list[str]) -> list[str]:
        return [line for line in lines if not (" TABLE DATA " in line and " bulk " in line)]

    with pytest.raises(CheckFailed) as caught:
        restore_backup(
            config, "prod", source=result.uri, target_url=database_url_b, select=without_bulk_rows, verify_before_commit=False
        )
    assert caught.value.exit_code == 1
    assert "does not match its recorded checksum" in caught.value.message
    assert "before the checksum was known and must be dropped" in caught.value.message


def test_object_grown_in_storage_is_refused_before_pg_restore_can_commit(project, config, bucket_name, database_url, database_url_b, s3):
    """Bytes appended after the archive: pg_restore would finish (and commit) before the checksum is known."""
    import os

    result = run_backup(config, "prod", database_url=database_url)
    head = s3.head_object(Bucket=bucket_name, Key=result.key)
    body = s3.get_object(Bucket=bucket_name, Key=result.key)["Body"].read()
    s3.put_object(Bucket=bucket_name, Key=result.key, Body=body + os.urandom(3 * 1024 * 1024), Metadata=head["Metadata"])

    with pytest.raises(CheckFailed) as caught:
        restore_backup(config, "prod", source=result.uri, target_url=database_url_b)
    assert "recorded" in caught.value.message and "nothing was restored" in caught.value.message
    assert not table_exists(database_url_b)


def test_non_empty_target_needs_clean_and_confirmation(project, config, database_url, s3, cli):
    run_backup(config, "prod", database_url=database_url)
    before = snapshot(database_url)
    refused = cli("restore", "--env", "prod", "--from", "latest")  # target: the env's own, non-empty database
    assert refused.exit_code == 1 and "is not empty" in refused.stderr and "--clean --confirm-clean" in refused.stderr
    unconfirmed = cli("restore", "--env", "prod", "--from", "latest", "--clean")
    assert unconfirmed.exit_code == 2 and "--confirm-clean" in unconfirmed.stderr

    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM events WHERE id > 10")
    done = cli("restore", "--env", "prod", "--from", "latest", "--clean", "--confirm-clean")
    assert done.exit_code == 0, done.output
    assert snapshot(database_url) == before
    assert "local-secret-pw" not in refused.output + done.output


def test_unverified_object_is_listed_but_never_restored(project, config, bucket_name, database_url_b, s3, cli):
    key = "forgeerp/prod/20260101T000000.000Z_v7.dump"
    s3.put_object(Bucket=bucket_name, Key=key, Body=b"PGDMP partial")
    listing = cli("backups", "--env", "prod")
    assert "UNVERIFIED" in listing.stdout and key in listing.stdout
    with pytest.raises(UsageError, match="no verified backup"):
        restore_backup(config, "prod", source="latest", target_url=database_url_b)
    with pytest.raises(CheckFailed, match="no recorded checksum"):
        restore_backup(config, "prod", source=f"s3://{bucket_name}/{key}", target_url=database_url_b)


def test_bad_source_uri_and_missing_object(project, config, bucket_name, database_url_b, s3, cli):
    bad = cli("restore", "--env", "prod", "--from", "forgeerp/prod/x.dump", "--target-database-url", database_url_b)
    assert bad.exit_code == 2 and "not an s3://BUCKET/KEY URI" in bad.stderr
    missing = cli("restore", "--env", "prod", "--from", f"s3://{bucket_name}/nope.dump", "--target-database-url", database_url_b)
    assert missing.exit_code == 3 and f"s3://{bucket_name}/nope.dump does not exist" in missing.stderr


def test_put_next_to_and_restore_command(project, config, bucket_name, database_url, s3):
    result = run_backup(config, "prod", database_url=database_url)
    uri = put_next_to(result.uri, "deploy-record.json", b'{"ok": true}', config=config)
    assert uri == f"s3://{bucket_name}/forgeerp/prod/deploy-record.json"
    stored = s3.get_object(Bucket=bucket_name, Key="forgeerp/prod/deploy-record.json")
    assert stored["Body"].read() == b'{"ok": true}' and stored["ServerSideEncryption"] == "AES256"
    with pytest.raises(UsageError):
        put_next_to(result.uri, "../x.json", b"", config=config)
    command = restore_command(config, "prod", result.uri)
    assert command.startswith("safemig restore --config ") and f"--env prod --from {result.uri}" in command
    assert '--target-database-url "$TARGET_DATABASE_URL"' in command


def test_cli_import_loads_neither_boto3_nor_psycopg():
    code = (
        "import sys, safemig.cli, safemig.backup\n"
        "safemig.cli.build_app()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'psycopg', 'moto')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_target_with_only_a_schema_a_type_or_an_extension_is_not_empty(project, config, database_url, database_url_b, s3):
    import psycopg

    run_backup(config, "prod", database_url=database_url)
    with psycopg.connect(database_url_b, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA billing; CREATE TYPE mood AS ENUM ('ok'); CREATE DOMAIN cents AS bigint")
    with pytest.raises(CheckFailed) as caught:
        restore_backup(config, "prod", source="latest", target_url=database_url_b)
    assert "1 schemas" in caught.value.message and "2 types or domains" in caught.value.message
    assert not table_exists(database_url_b)
