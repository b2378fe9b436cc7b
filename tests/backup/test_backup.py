"""`safemig backup` against a real PostgreSQL server and moto: round trip, and every way it must refuse.

Most tests use moto in-process (``mock_aws``); the end-to-end round trip runs the real CLI
as a subprocess with pg_dump streaming into moto's HTTP server.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import boto3
import pytest
from moto import mock_aws

from safemig.backup import list_backups, restore_backup, run_backup
from safemig.backup.pgdump import pick_binary
from safemig.backup.settings import load_settings
from safemig.backup.verify import list_archive
from safemig.config import load_config
from safemig.errors import ConfigError, StorageError, ToolError
from safemig.local.postgres import free_port
from tests.backup.conftest import children_named, snapshot, write_config


def keys(client, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(client, bucket: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def pg_dump_children() -> list[int]:
    """PIDs of pg_dump processes this test process started."""
    return children_named(os.getpid(), "pg_dump")


@pytest.fixture
def big(project, database_url, bucket_name):
    """The project with ~25 MB more of incompressible rows and no compression: several 5 MiB parts."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk AS SELECT i, md5(i::text) || md5(random()::text) || md5(random()::text) AS t FROM generate_series(1, 220000) AS i")
    write_config(project, bucket_name, part_size_mb=5, compression=0)
    return load_config(project / "safemig.toml")


def test_backup_streams_in_parts_records_metadata_and_restores_identically(
    big, database_url, database_url_b, s3, bucket_name, pg_major, tmp_path
):
    result = run_backup(big, "prod", database_url=database_url, label="release 2.1 — hotfix")

    assert result.parts >= 4  # really multipart: 5 MiB parts of a >20 MB dump
    assert result.uri == f"s3://{bucket_name}/{result.key}"
    assert result.key.startswith("forgeerp/prod/") and result.key.endswith("_v2.dump")  # newest *successful* version
    body = s3.get_object(Bucket=bucket_name, Key=result.key)["Body"].read()
    assert len(body) == result.size and hashlib.sha256(body).hexdigest() == result.sha256
    head = s3.head_object(Bucket=bucket_name, Key=result.key)
    meta = head["Metadata"]
    assert meta["newest-version"] == "2" and meta["server-version"].startswith(f"{pg_major}.")
    assert meta["database"] == database_url.rsplit("/", 1)[1] and meta["safemig-version"]
    assert head["ServerSideEncryption"] == "AES256"
    manifest = json.loads(s3.get_object(Bucket=bucket_name, Key=result.key + ".manifest.json")["Body"].read())
    assert manifest["sha256"] == result.sha256 and manifest["size"] == result.size
    assert manifest["etag"] == head["ETag"].strip('"') and manifest["verified"]["stored"] == "etag"
    # the data blocks' compressed sizes, the largest by the dump ID of its `pg_restore -l` line (here: all)
    listed = subprocess.run(["pg_restore", "-l"], input=body, capture_output=True, check=True).stdout.decode()
    data_ids = {line.split(";")[0] for line in listed.splitlines() if " TABLE DATA " in line}
    sizes = manifest["data_bytes"]
    assert data_ids and data_ids == set(sizes["largest"]) and sizes["blocks"] == len(data_ids)
    assert 0 < sum(sizes["largest"].values()) == sizes["total"] < result.size
    roles = s3.get_object(Bucket=bucket_name, Key=result.key + ".globals.sql")["Body"].read()
    assert b"CREATE ROLE postgres" in roles and b"SCRAM-SHA-256" not in roles  # no password hashes by default
    assert hashlib.sha256(roles).hexdigest() == manifest["globals"]["sha256"]
    assert open_uploads(s3, bucket_name) == []
    stored = tmp_path / "stored.dump"
    stored.write_bytes(body)
    listed = list_archive(pick_binary("pg_restore", pg_major, purpose="test"), stored)
    assert result.toc_entries == len(listed) > 0  # the TOC read from the stream is the stored object's

    [info] = list_backups(big, "prod")
    assert info.verified and info.newest_version == 2 and info.label == "release 2.1 — hotfix"

    restored = restore_backup(big, "prod", source="latest", target_url=database_url_b)
    assert restored.sha256 == result.sha256
    assert snapshot(database_url_b) == snapshot(database_url)
    import psycopg

    with psycopg.connect(database_url_b) as conn:
        assert conn.execute("SELECT count(*), sum(length(t)) FROM bulk").fetchone() == (220000, 220000 * 96)
        assert conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events' ORDER BY 1").fetchall() == [("events_pkey",), ("events_tenant",)]


def test_pg_dump_killed_mid_stream_leaves_no_object_and_no_upload(big, database_url, s3, bucket_name):
    killed = []

    def kill_pg_dump(part_number: int) -> None:
        if part_number == 2:  # part 1 is on its way to S3: there is something to abort
            for pid in pg_dump_children():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with pytest.raises(ToolError) as caught:
        run_backup(big, "prod", database_url=database_url, on_part=kill_pg_dump)
    assert killed, "pg_dump had already finished: the test database is too small"
    assert "pg_dump was killed by SIGKILL" in caught.value.message
    assert caught.value.exit_code == 3
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_pg_dump_error_is_reported_with_its_stderr_and_nothing_is_stored(project, config, database_url, pg_cluster, s3, bucket_name):
    """pg_dump connects fine but cannot read a table: its own message, no object, no password."""
    dbname = database_url.rsplit("/", 1)[1]
    pg_cluster.psql("DROP ROLE IF EXISTS limited_backup; CREATE ROLE limited_backup LOGIN PASSWORD 'limited-pw-123'")
    pg_cluster.psql(f"GRANT CONNECT ON DATABASE {dbname} TO limited_backup", dbname=dbname)
    pg_cluster.psql("GRANT SELECT ON _sqlx_migrations TO limited_backup", dbname=dbname)  # but not events
    url = pg_cluster.url(dbname, user="limited_backup", password="limited-pw-123")
    try:
        with pytest.raises(ToolError) as caught:
            run_backup(config, "prod", database_url=url)
    finally:
        pg_cluster.psql(f"REVOKE ALL ON DATABASE {dbname} FROM limited_backup; REVOKE ALL ON _sqlx_migrations FROM limited_backup", dbname=dbname)
        pg_cluster.psql("DROP ROLE limited_backup")  # roles are cluster-wide: later tests dump the globals
    message = caught.value.message
    assert "pg_dump exited with status 1" in message and "permission denied" in message
    assert "limited-pw-123" not in message + (caught.value.hint or "")
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_truncated_output_with_exit_0_is_caught_by_the_archive_check(big, project, database_url, s3, bucket_name, tmp_path):
    """End of input is not success: a stream cut short (here by a wrapper that still exits 0) is refused."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = shutil.which("pg_dump")
    (wrappers / "pg_dump").write_text(
        f'#!/bin/bash\nif [ "$1" = --version ]; then exec {real} --version; fi\n{real} "$@" | head -c 3000000\nexit 0\n'
    )
    (wrappers / "pg_dump").chmod(0o755)
    (wrappers / "pg_restore").symlink_to(shutil.which("pg_restore"))
    (wrappers / "pg_dumpall").symlink_to(shutil.which("pg_dumpall"))
    write_config(project, bucket_name, part_size_mb=5, compression=0, pg_bin_dir=str(wrappers))
    with pytest.raises(ToolError) as caught:
        run_backup(load_config(project / "safemig.toml"), "prod", database_url=database_url)
    assert caught.value.exit_code == 3
    assert "not a readable archive: the archive ends at byte" in caught.value.message
    assert "inside the data block of TOC entry" in caught.value.message and "\n" not in caught.value.message
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_a_damaged_byte_in_compressed_data_fails_the_backup_naming_the_block(big, project, database_url, s3, bucket_name, tmp_path):
    """Same length, exit 0, every length and ID intact: only inflating the block (and zlib's checksum) can tell."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = shutil.which("pg_dump")
    flip = (
        "import sys; data = sys.stdin.buffer.read(); at = len(data) - 3000;"
        " sys.stdout.buffer.write(data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:])"
    )
    (wrappers / "pg_dump").write_text(
        f'#!/bin/bash\nif [ "$1" = --version ]; then exec {real} --version; fi\n'
        f'{real} "$@" | {sys.executable} -c "{flip}"\nexit 0\n'
    )
    (wrappers / "pg_dump").chmod(0o755)
    (wrappers / "pg_restore").symlink_to(shutil.which("pg_restore"))
    (wrappers / "pg_dumpall").symlink_to(shutil.which("pg_dumpall"))
    write_config(project, bucket_name, part_size_mb=5, compression=1, pg_bin_dir=str(wrappers))
    with pytest.raises(ToolError) as caught:
        run_backup(load_config(project / "safemig.toml"), "prod", database_url=database_url)
    assert caught.value.exit_code == 3
    message = caught.value.message
    assert "not a readable archive" in message and "\n" not in message
    assert "TABLE DATA public." in message, message  # the block named by its TOC entry
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_s3_failing_mid_upload_aborts_the_upload(big, database_url, s3, bucket_name, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    import safemig.backup.run as run_module

    real_make_client = run_module.make_client

    def flaky_client(settings):
        client = real_make_client(settings)

        def fail_part_3(params, **_):
            if params.get("PartNumber") == 3:
                raise EndpointConnectionError(endpoint_url="https://s3.example.invalid")

        client.meta.events.register("before-parameter-build.s3.UploadPart", fail_part_3)
        return client

    monkeypatch.setattr(run_module, "make_client", flaky_client)
    with pytest.raises(StorageError) as caught:
        run_backup(big, "prod", database_url=database_url)
    assert "cannot reach S3 while uploading part 3" in caught.value.message
    assert pg_dump_children() == []  # pg_dump was stopped, not left writing into a dead pipe
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_store_returning_other_bytes_fails_the_read_back_and_deletes_the_object(project, config, database_url, s3, bucket_name, monkeypatch):
    """A store whose ETag is not the parts' MD5s (as with SSE-KMS) gets a full read-back; here it returns other bytes."""
    import io

    from botocore.response import StreamingBody

    import safemig.backup.run as run_module

    real_make_client = run_module.make_client

    def corrupting_client(settings):
        client = real_make_client(settings)

        def opaque_etag(http_response, parsed, **_):
            parsed["ETag"] = '"kms-style-etag"'

        client.meta.events.register("after-call.s3.CompleteMultipartUpload", opaque_etag)

        def flip_a_byte(http_response, parsed, **_):
            data = bytearray(parsed["Body"].read())
            data[len(data) // 2] ^= 0xFF
            parsed["Body"] = StreamingBody(io.BytesIO(bytes(data)), len(data))

        client.meta.events.register("after-call.s3.GetObject", flip_a_byte)
        return client

    monkeypatch.setattr(run_module, "make_client", corrupting_client)
    with pytest.raises(StorageError) as caught:
        run_backup(config, "prod", database_url=database_url)
    assert "read back as" in caught.value.message and "the unverified object was deleted" in caught.value.hint
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_bucket_missing_is_exit_3_with_a_hint(project, config, database_url, bucket_name):
    with mock_aws():
        with pytest.raises(StorageError) as caught:
            run_backup(config, "prod", database_url=database_url)
    assert caught.value.exit_code == 3
    assert f"bucket {bucket_name} does not exist (while starting the upload to s3://{bucket_name}/forgeerp/prod/" in caught.value.message
    assert "backup.bucket" in caught.value.hint


def test_access_denied_is_exit_3_and_never_shows_the_keys(project, config, database_url, bucket_name, monkeypatch):
    from moto.core import set_initial_no_auth_action_count

    @set_initial_no_auth_action_count(4)
    def attempt():
        s3 = boto3.client("s3", region_name="us-east-1")
        iam = boto3.client("iam", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket_name)
        iam.create_user(UserName="reader")
        iam.put_user_policy(
            UserName="reader", PolicyName="read-only",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}),
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        with pytest.raises(StorageError) as caught:
            run_backup(config, "prod", database_url=database_url)
        return caught.value, key

    with mock_aws():
        error, key = attempt()
    text = error.message + error.hint
    assert error.exit_code == 3 and "access denied" in text
    assert key["SecretAccessKey"] not in text and key["AccessKeyId"] not in text


def test_s3_unreachable_cli_exit_3(project, cli, monkeypatch, database_url):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAABCDEFGHIJKLMNOP")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-key-value-0123456789")
    result = cli("backup", "--env", "prod")
    assert result.exit_code == 3, result.output
    assert "cannot reach S3 while starting the upload" in result.stderr
    assert "Traceback" not in result.output
    for secret in ("very-secret-key-value-0123456789", "AKIAABCDEFGHIJKLMNOP", "local-secret-pw"):
        assert secret not in result.output
    assert pg_dump_children() == []


@pytest.mark.parametrize("password", ["Hun/ter2+Secret=", "Hunter2%zzSecret", "Hunter2 Secret", "Hunter2@Secret"])
def test_malformed_url_never_shows_its_password(project, cli, password):
    """An unescaped '/' (base64 passwords), '@', space or bad %-escape: libpq and psycopg quote the raw token."""
    result = cli("backup", "--env", "prod", "--database-url", f"postgresql://app:{password}@127.0.0.1:1/db")
    assert result.exit_code in (2, 3), result.output
    assert "Traceback" not in result.output
    for fragment in ("Hunter2", "Secret", "ter2"):
        assert fragment not in result.output


def test_wrong_database_password_cli_exit_3_masked(project, cli, s3, monkeypatch, database_url, bucket_name):
    bad = database_url.replace(":local-secret-pw@", ":wrong-pw-456@")
    result = cli("backup", "--env", "prod", "--database-url", bad)
    assert result.exit_code == 3, result.output
    assert "password authentication failed" in result.stderr
    assert "wrong-pw-456" not in result.output and "****" in result.stderr
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_pg_dump_too_old_for_the_server_names_the_binary_to_use(project, database_url, s3, bucket_name, tmp_path, pg_major):
    old = tmp_path / "old-bin"
    old.mkdir()
    fake = old / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.4'\n")
    fake.chmod(0o755)
    write_config(project, bucket_name, pg_bin_dir=str(old))
    with pytest.raises(ToolError) as caught:
        run_backup(load_config(project / "safemig.toml"), "prod", database_url=database_url)
    assert f"pg_dump {pg_major} or newer is needed to dump PostgreSQL {pg_major}" in caught.value.message
    assert f"{fake} is 13" in caught.value.message
    assert f"postgresql-client-{pg_major}" in caught.value.hint
    assert keys(s3, bucket_name) == []


def test_cli_human_and_json_output(project, cli, s3, bucket_name, database_url):
    human = cli("backup", "--env", "prod", "--label", "v1")
    assert human.exit_code == 0, human.output
    assert f"backup stored and verified: s3://{bucket_name}/forgeerp/prod/" in human.stdout
    assert "sha256" in human.stdout and "/s" in human.stdout
    data = json.loads(cli("backup", "--env", "prod", "--json").stdout)
    assert set(data) >= {"uri", "bucket", "key", "size", "sha256", "duration_s", "throughput_bps", "metadata", "newest_version"}
    assert data["newest_version"] == 2 and data["metadata"]["sha256"] == data["sha256"]
    listing = cli("backups", "--env", "prod")
    assert listing.exit_code == 0 and listing.stdout.count("forgeerp/prod/") == 2 and "[v1]" in listing.stdout
    listed = json.loads(cli("backups", "--env", "prod", "--json").stdout)["backups"]
    assert [b["verified"] for b in listed] == [True, True]
    assert listed[0]["created"] >= listed[1]["created"]
    assert "local-secret-pw" not in human.output + listing.output


def test_config_mistakes_are_exit_2(project, cli, bucket_name):
    write_config(project, bucket_name, part_size_mb=4)
    result = cli("backup", "--env", "prod")
    assert result.exit_code == 2 and "backup.part_size_mb" in result.stderr and "from 5 to 5120" in result.stderr
    write_config(project, bucket_name, compression="fast")
    assert "backup.compression" in cli("backup", "--env", "prod").stderr
    (project / "safemig.toml").write_text('[envs.prod]\ndatabase_url = "x"\n')
    result = cli("backups", "--env", "prod")
    assert result.exit_code == 2 and "backup.bucket is not set" in result.stderr


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_archive_storage_class_is_refused_before_dumping(project, cli, s3, bucket_name, storage_class):
    """Such objects cannot be read back (verify, restore) without a restore request: refuse up front, not after the dump."""
    write_config(project, bucket_name, storage_class=storage_class)
    result = cli("backup", "--env", "prod")
    assert result.exit_code == 2, result.output
    assert f"backup.storage_class = '{storage_class}'" in result.stderr and "GLACIER_IR" in result.stderr
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == [] and pg_dump_children() == []


def test_settings_defaults_and_sse(project, bucket_name):
    write_config(project, bucket_name, sse="aws:kms", kms_key_id="alias/backups", storage_class="STANDARD_IA")
    settings = load_settings(load_config(project / "safemig.toml"))
    assert settings.prefix == "forgeerp/" and settings.compression == "1"
    assert settings.put_args() == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/backups", "StorageClass": "STANDARD_IA"}
    write_config(project, bucket_name, kms_key_id="alias/x")
    with pytest.raises(ConfigError, match="kms_key_id"):
        load_settings(load_config(project / "safemig.toml"))


def test_part_size_is_chosen_up_front_to_fit_10000_parts():
    from safemig.backup.settings import MiB, choose_part_size

    assert choose_part_size(8 * MiB, 10 * 1024 * MiB) == 8 * MiB
    big = 200 * 1024 * MiB  # 200 GiB
    size = choose_part_size(8 * MiB, big)
    assert size % MiB == 0 and size * 10_000 >= big and size > 8 * MiB


@pytest.mark.compat  # on every PostgreSQL major CI tests
def test_cli_round_trip_as_a_subprocess_against_moto_server(project, cli_process, s3_env, database_url, database_url_b, bucket_name):
    """The real thing: `safemig backup` in its own process, pg_dump streaming into an HTTP endpoint."""
    boto3.client("s3").create_bucket(Bucket=bucket_name)
    backup = cli_process("backup", "--env", "prod", "--json", cwd=project)
    assert backup.exit_code == 0, backup.stderr
    uri = json.loads(backup.stdout)["uri"]
    restore = cli_process("restore", "--env", "prod", "--from", uri, "--target-database-url", database_url_b, "--json", cwd=project)
    assert restore.exit_code == 0, restore.stderr
    assert json.loads(restore.stdout)["sha256"] == json.loads(backup.stdout)["sha256"]
    assert snapshot(database_url_b) == snapshot(database_url)
    assert "local-secret-pw" not in backup.stdout + backup.stderr + restore.stdout + restore.stderr
    assert open_uploads(boto3.client("s3"), bucket_name) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_during_backup_aborts_the_upload(big, project, cli_process, s3_env, database_url, bucket_name, signum):
    """CI cancelling the job (SIGTERM) or the ssh session dropping (SIGHUP) mid-upload: exit 130, no object, no open upload, no pg_dump left."""
    import subprocess
    import sys
    import time

    write_config(project, bucket_name, part_size_mb=5, compression=9, concurrency=1)  # -Z9: slow enough to catch
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket_name)
    proc = subprocess.Popen([sys.executable, "-m", "safemig.cli", "backup", "--env", "prod"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not open_uploads(s3, bucket_name) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the backup finished before it could be interrupted"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []
    dbname = database_url.rsplit("/", 1)[1]
    leftovers = subprocess.run(["pgrep", "-f", f"pg_dump.*{dbname}"], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def test_sighup_under_nohup_does_not_stop_the_backup(project, s3_env, database_url, bucket_name):
    """`nohup safemig backup &`: SIGHUP is ignored on purpose, and the backup carries on to the end."""
    import subprocess
    import sys
    import time

    import psycopg

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket_name)
    blocker = psycopg.connect(database_url)
    blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # pg_dump waits here, the upload open
    try:
        proc = subprocess.Popen([sys.executable, "-m", "safemig.cli", "backup", "--env", "prod"], cwd=project,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
        deadline = time.monotonic() + 60
        while not open_uploads(s3, bucket_name) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        blocker.close()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert len([k for k in keys(s3, bucket_name) if k.endswith(".dump")]) == 1 and open_uploads(s3, bucket_name) == []


def _wrapped_bin(tmp_path, **bodies: str):
    """A bin dir of pg_dump/pg_restore/pg_dumpall: the real ones, or a bash wrapper for the named ones."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir(exist_ok=True)
    for name in ("pg_dump", "pg_restore", "pg_dumpall"):
        real = shutil.which(name)
        if name in bodies:
            (wrappers / name).write_text(f"#!/bin/bash\nREAL={real}\n{bodies[name]}\n")
            (wrappers / name).chmod(0o755)
        else:
            (wrappers / name).symlink_to(real)
    return wrappers


def test_pg_dumpall_failing_beside_the_dump_refuses_the_backup(big, project, database_url, s3, bucket_name, tmp_path):
    """The roles are dumped while pg_dump runs; their failure still means no object and no open upload."""
    bin_dir = _wrapped_bin(
        tmp_path,
        pg_dumpall='if [ "$1" = --version ]; then exec $REAL --version; fi\necho "pg_dumpall: error: query failed: permission denied for table pg_authid" >&2\nexit 1',
    )
    write_config(project, bucket_name, part_size_mb=5, compression=0, pg_bin_dir=str(bin_dir))
    with pytest.raises(ToolError) as caught:
        run_backup(load_config(project / "safemig.toml"), "prod", database_url=database_url)
    assert caught.value.exit_code == 3
    assert "pg_dumpall --globals-only exited with status 1" in caught.value.message and "pg_authid" in caught.value.message
    assert "the upload was aborted" in caught.value.hint
    assert pg_dump_children() == []
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_each_binary_is_asked_its_version_once_per_process(project, database_url, s3, bucket_name, tmp_path):
    """pg_dump, pg_restore and pg_dumpall --version run once (together), not before every backup."""
    log = tmp_path / "versions.log"
    probe = f'if [ "$1" = --version ]; then echo "$0" >> {log}; fi\nexec $REAL "$@"'
    bin_dir = _wrapped_bin(tmp_path, pg_dump=probe, pg_restore=probe, pg_dumpall=probe)
    write_config(project, bucket_name, part_size_mb=5, pg_bin_dir=str(bin_dir))
    config = load_config(project / "safemig.toml")
    first = run_backup(config, "prod", database_url=database_url)
    second = run_backup(config, "prod", database_url=database_url)
    assert first.toc_entries == second.toc_entries > 0
    assert gc.isenabled()  # paused only while the backup starts
    assert sorted(log.read_text().split()) == sorted(str(bin_dir / name) for name in ("pg_dump", "pg_dumpall", "pg_restore"))


def test_s3_client_that_cannot_be_built_stops_pg_dump_and_stores_nothing(project, config, database_url, s3, bucket_name, monkeypatch):
    """The client is built while pg_dump already runs: its failure is reported as is, and pg_dump stopped."""
    import safemig.backup.run as run_module

    def broken_client(settings):
        raise StorageError("cannot create an S3 client: Invalid endpoint: htp:/x", hint="check AWS_ENDPOINT_URL")

    monkeypatch.setattr(run_module, "make_client", broken_client)
    with pytest.raises(StorageError) as caught:
        run_backup(config, "prod", database_url=database_url)
    assert caught.value.message == "cannot create an S3 client: Invalid endpoint: htp:/x"
    assert caught.value.hint == "check AWS_ENDPOINT_URL"  # no upload was created: nothing said about aborting one
    assert pg_dump_children() == []
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == []


def test_lock_wait_timeout_is_passed_to_pg_dump(project, bucket_name):
    from safemig.backup.pgdump import Binary
    from safemig.backup.run import pg_dump_args
    from safemig.backup.settings import load_settings

    write_config(project, bucket_name, lock_wait_timeout="10s", stall_timeout="2min")
    settings = load_settings(load_config(project / "safemig.toml"))
    assert settings.stall_timeout == 120.0
    assert "--lock-wait-timeout=10000" in pg_dump_args(Binary("/x/pg_dump", 15, "15.1"), "dbname=x", settings)


@pytest.mark.parametrize("compression", ["zstd:3", "lz4", "gzip:5", "none"])
def test_compression_the_pg_dump_cannot_do_is_exit_2_before_dumping(project, cli, s3, bucket_name, compression):
    """METHOD[:LEVEL] needs pg_dump 16+: refused before pg_dump runs, not by pg_dump half-way."""
    import subprocess

    major = int(subprocess.run([shutil.which("pg_dump"), "--version"], capture_output=True, text=True).stdout.split()[-1].split(".")[0])
    if major >= 16:
        pytest.skip("this machine's pg_dump takes METHOD:LEVEL")
    write_config(project, bucket_name, compression=compression)
    result = cli("backup", "--env", "prod")
    assert result.exit_code == 2, result.output
    assert f"backup.compression = '{compression}'" in result.stderr and "needs pg_dump 16 or newer" in result.stderr
    assert keys(s3, bucket_name) == [] and open_uploads(s3, bucket_name) == [] and pg_dump_children() == []


def test_duration_settings_are_validated(project, bucket_name):
    for bad in ("soon", "0s", "-1s", True):
        write_config(project, bucket_name, stall_timeout=bad)
        with pytest.raises(ConfigError, match="backup.stall_timeout"):
            load_settings(load_config(project / "safemig.toml"))
    write_config(project, bucket_name, stall_timeout=90)
    assert load_settings(load_config(project / "safemig.toml")).stall_timeout == 90.0


@pytest.mark.compat
@pytest.mark.parametrize(
    "compression, read_by",
    [
        ("lz4", "pg_restore read every block in-stream; "),
        ("gzip:5", "every block read and inflated in-stream (zlib's checksum checked); "),
        ("none", "every block read in-stream (uncompressed: no checksum inside the archive); "),
    ],
)
def test_each_compression_method_is_read_to_its_end_in_stream(
    project, database_url, s3, bucket_name, pg_major, compression, read_by
):
    """gzip and uncompressed archives by safemig's reader, lz4 (pg_dump 16+) by pg_restore -f /dev/null."""
    if pg_major < 16:
        pytest.skip("METHOD[:LEVEL] compression needs pg_dump 16 or newer")
    write_config(project, bucket_name, compression=compression)
    result = run_backup(load_config(project / "safemig.toml"), "prod", database_url=database_url)
    assert result.verified_by.startswith(read_by), result.verified_by
    manifest = json.loads(s3.get_object(Bucket=bucket_name, Key=result.key + ".manifest.json")["Body"].read())
    assert ("data_bytes" in manifest) == (compression != "lz4")
