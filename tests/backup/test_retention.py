"""`safemig backups` (statuses, open uploads), `backups prune`, `backups verify`, versioned buckets."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from safemig.backup import run_backup
from safemig.backup.retention import prune
from safemig.backup.store import backup_key, manifest_key
from safemig.backup.settings import load_settings
from tests.backup.conftest import write_config
from tests.backup.test_restore import corrupt_downloads


def all_keys(client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def fake_backup(client, config, when: datetime, *, verified: bool = True, version: int = 1) -> str:
    """A small object under a key for ``when``, with a manifest when ``verified`` (prune reads no bodies)."""
    settings = load_settings(config)
    key = backup_key(settings, "prod", when, version)
    body = b"PGDMP" + when.isoformat().encode()
    etag = client.put_object(Bucket=settings.bucket, Key=key, Body=body)["ETag"].strip('"')
    if verified:
        manifest = {"format": "safemig-backup/1", "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "etag": etag, "metadata": {}}
        client.put_object(Bucket=settings.bucket, Key=manifest_key(key), Body=json.dumps(manifest).encode())
    return key


def test_prune_keeps_the_policy_and_removes_the_rest(config, s3, bucket_name, cli):
    now = datetime.now(UTC) + timedelta(days=2)  # so that the open upload below is "two days old"
    verified = [fake_backup(s3, config, now - timedelta(days=d)) for d in (1, 2, 3, 4, 5)]
    old_unverified = fake_backup(s3, config, now - timedelta(days=3, hours=1), verified=False)
    young_unverified = fake_backup(s3, config, now - timedelta(hours=1), verified=False)
    s3.create_multipart_upload(Bucket=bucket_name, Key="forgeerp/prod/20200101T000000.000Z_v1.dump")

    dry = prune(config, "prod", keep_last=2, dry_run=True, now=now)
    assert [b.key for b, _ in dry.removed] == [verified[2], old_unverified, verified[3], verified[4]]
    assert len(dry.aborted) == 1
    assert len(all_keys(s3, bucket_name)) == 12  # nothing removed by a dry run

    done = prune(config, "prod", keep_last=2, now=now)
    assert {b.key for b, _ in done.kept} == {verified[0], verified[1], young_unverified}
    left = all_keys(s3, bucket_name)
    assert left == sorted([verified[0], manifest_key(verified[0]), verified[1], manifest_key(verified[1]), young_unverified])
    assert s3.list_multipart_uploads(Bucket=bucket_name).get("Uploads", []) == []


def test_prune_never_removes_the_newest_verified_backup(config, s3, bucket_name):
    now = datetime.now(UTC)
    old = [fake_backup(s3, config, now - timedelta(days=d)) for d in (30, 40)]
    newer_but_unverified = fake_backup(s3, config, now - timedelta(days=20), verified=False)
    result = prune(config, "prod", keep_days=7, now=now)
    assert [(b.key, why) for b, why in result.kept] == [(old[0], "the newest verified backup")]
    assert {b.key for b, _ in result.removed} == {old[1], newer_but_unverified}


def test_prune_cli_needs_a_policy_and_reads_the_config(project, s3, bucket_name, cli):
    refused = cli("backups", "prune", "--env", "prod")
    assert refused.exit_code == 2 and "no retention policy" in refused.stderr and "backup.keep_last" in refused.stderr
    write_config(project, bucket_name, keep_last=1)
    from safemig.config import load_config

    config = load_config(project / "safemig.toml")
    now = datetime.now(UTC)
    keys = [fake_backup(s3, config, now - timedelta(days=d)) for d in (1, 2)]
    done = cli("backups", "prune", "--env", "prod", "--json")
    assert done.exit_code == 0, done.output
    assert [r["uri"].rsplit("/", 1)[1] for r in json.loads(done.stdout)["removed"]] == [keys[1].rsplit("/", 1)[1]]


def test_listing_shows_unverified_inconsistent_and_open_uploads(config, s3, bucket_name, cli):
    now = datetime.now(UTC)
    good = fake_backup(s3, config, now - timedelta(hours=3))
    fake_backup(s3, config, now - timedelta(hours=2), verified=False)
    grown = fake_backup(s3, config, now - timedelta(hours=1))
    s3.put_object(Bucket=bucket_name, Key=grown, Body=b"PGDMP something else, longer")  # changed after verification
    s3.create_multipart_upload(Bucket=bucket_name, Key="forgeerp/prod/20260101T000000.000Z_v1.dump")
    listing = cli("backups", "--env", "prod")
    assert listing.exit_code == 0, listing.output
    assert "UNVERIFIED" in listing.stdout and "INCONSISTENT: size" in listing.stdout
    assert "open upload forgeerp/prod/20260101T000000.000Z_v1.dump" in listing.stdout and " ago: never completed" in listing.stdout
    data = json.loads(cli("backups", "--env", "prod", "--json").stdout)
    assert [b["status"] for b in data["backups"]] == ["inconsistent", "unverified", "verified"]
    assert data["backups"][2]["key"] == good and len(data["open_uploads"]) == 1


def test_verify_latest_reads_every_block_and_can_restore_into_a_scratch_database(project, config, database_url, database_url_b, s3, cli):
    result = run_backup(config, "prod", database_url=database_url)
    ok = cli("backups", "verify", "--env", "prod", "latest", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["sha256"] == result.sha256
    restored = cli("backups", "verify", "--env", "prod", result.uri, "--restore", database_url_b, "--json")
    assert restored.exit_code == 0, restored.output
    scratch = json.loads(restored.stdout)["restored_into"]
    import psycopg

    with psycopg.connect(database_url_b) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (scratch,)).fetchone() == (0,)
    assert "local-secret-pw" not in ok.output + restored.output


def test_verify_refuses_damaged_bytes_and_an_unreadable_archive_with_exit_1(project, config, database_url, s3, bucket_name, cli, monkeypatch):
    run_backup(config, "prod", database_url=database_url)
    import safemig.backup.audit as audit_module
    import safemig.backup.restore as restore_module

    with monkeypatch.context() as patched:
        corrupt_downloads(patched, at_fraction=0.3)
        patched.setattr(audit_module, "make_client", restore_module.make_client)
        damaged = cli("backups", "verify", "--env", "prod", "latest")
    assert damaged.exit_code == 1 and "does not match its recorded checksum" in damaged.stderr

    key = fake_backup(s3, config, datetime.now(UTC))  # recorded checksum right, but not a pg_dump archive
    unreadable = cli("backups", "verify", "--env", "prod", f"s3://{bucket_name}/{key}")
    assert unreadable.exit_code == 1 and "not a readable archive: archive version" in unreadable.stderr


def test_versioned_bucket_keeps_one_version_and_a_failed_verification_leaves_none(project, config, database_url, s3, bucket_name, monkeypatch):
    from safemig.errors import StorageError

    s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Enabled"})
    result = run_backup(config, "prod", database_url=database_url)
    versions = s3.list_object_versions(Bucket=bucket_name, Prefix=result.key)["Versions"]
    assert [v["Key"] for v in versions if v["Key"] == result.key] == [result.key]  # no self-copy: one full version

    import io

    from botocore.response import StreamingBody

    import safemig.backup.run as run_module

    real_make_client = run_module.make_client

    def kms_like_and_corrupting(settings):
        client = real_make_client(settings)

        def opaque_etag(parsed, **_):
            parsed["ETag"] = '"kms-style-etag"'

        def flip(parsed, **_):
            data = bytearray(parsed["Body"].read())
            data[len(data) // 2] ^= 0xFF
            parsed["Body"] = StreamingBody(io.BytesIO(bytes(data)), len(data))

        client.meta.events.register("after-call.s3.CompleteMultipartUpload", opaque_etag)
        client.meta.events.register("after-call.s3.GetObject", flip)
        return client

    monkeypatch.setattr(run_module, "make_client", kms_like_and_corrupting)
    with pytest.raises(StorageError):
        run_backup(config, "prod", database_url=database_url)
    listed = s3.list_object_versions(Bucket=bucket_name)
    left = {v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])}
    assert left == {result.key, manifest_key(result.key), result.key + ".globals.sql"}  # only the first backup's
