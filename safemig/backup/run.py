"""``run_backup``: pg_dump streamed into S3, verified, and only then labelled as a good backup.

The steps, each refusing to go on when the previous one did not fully succeed:

1. read the database's facts (name, server version, size, newest applied migration);
2. pick a pg_dump able to dump that server;
3. stream ``pg_dump -Fc`` into a multipart upload (memory bounded, SHA-256 on the fly) and,
   at the same time, into ``pg_restore -f /dev/null`` (every block of the archive read);
   the upload completes only after pg_dump exited 0 and pg_restore read it all, otherwise
   it is aborted;
4. write the checksum and size into the object's metadata (an in-place server-side copy:
   S3 metadata cannot change otherwise). An object without a ``sha256`` is never offered
   for restore;
5. read the final object back: S3's Content-Length and metadata must say what was sent, the
   bytes must hash to the SHA-256 sent, and ``pg_restore --list`` must read its table of
   contents. (Should the process die between 4 and 5, restore still re-checks every byte.)

A failure in 4 or 5 deletes the object. Every failure is exit 3, with pg_dump's or
pg_restore's stderr or the S3 error, redacted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from safemig import __version__
from safemig.backup.pgdump import Binary, ChildProcess, child_env, conninfo_without_password, enlarge_pipe, pick_binary
from safemig.backup.progress import transfer_progress
from safemig.backup.settings import BackupSettings, choose_part_size, load_settings
from safemig.backup.store import backup_key, encode_metadata, make_client, storage_error
from safemig.backup.upload import stream_to_s3
from safemig.backup.verify import ArchiveCheck, delete_quietly, verify_stored
from safemig.config import Config
from safemig.errors import DatabaseError, SafemigError, ToolError

S3_MAX_COPY = 5 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class DatabaseFacts:
    """What a backup records about its database."""

    name: str
    server_version: str
    server_major: int
    size_bytes: int
    newest_version: int | None


@dataclass(frozen=True)
class BackupResult:
    """A verified backup in S3."""

    uri: str
    bucket: str
    key: str
    size: int
    sha256: str
    duration_s: float
    throughput_bps: float
    metadata: dict[str, str]
    newest_version: int | None
    parts: int = 0
    dump_s: float = 0.0
    verify_s: float = 0.0
    toc_entries: int = 0
    pg_dump: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "duration_s": round(self.duration_s, 3),
            "dump_s": round(self.dump_s, 3),
            "verify_s": round(self.verify_s, 3),
            "throughput_bps": round(self.throughput_bps),
            "parts": self.parts,
            "toc_entries": self.toc_entries,
            "newest_version": self.newest_version,
            "pg_dump": self.pg_dump,
            "metadata": self.metadata,
        }


def database_facts(url: str) -> DatabaseFacts:
    """Name, server version, size on disk and newest applied sqlx migration of ``url``'s database."""
    import psycopg

    from safemig.db import connect, describe, error_text

    with connect(url, autocommit=True, application_name="safemig backup") as conn:
        try:
            name, version, num, size, ledger = conn.execute(
                "SELECT current_database(), current_setting('server_version'), current_setting('server_version_num')::int,"
                " pg_database_size(current_database()), to_regclass('_sqlx_migrations') IS NOT NULL"
            ).fetchone()
            newest = (
                conn.execute("SELECT max(version) FROM _sqlx_migrations WHERE success").fetchone()[0]
                if ledger
                else None
            )
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot inspect {describe(url)}: {error_text(exc)}",
                hint="the backup user needs to read the catalog and _sqlx_migrations",
            ) from None
    return DatabaseFacts(
        name=name,
        server_version=version.split()[0],
        server_major=num // 10000,
        size_bytes=int(size),
        newest_version=newest,
    )


def pg_dump_args(binary: Binary, conninfo: str, settings: BackupSettings) -> list[str]:
    """``pg_dump -Fc -Z LEVEL`` to stdout; the conninfo carries no password."""
    return [
        binary.path,
        "--format=custom",
        f"--compress={settings.compression}",
        "--no-password",
        f"--dbname={conninfo}",
    ]


def run_backup(
    config: Config,
    env: str,
    *,
    database_url: str,
    label: str | None = None,
    progress: bool = False,
    settings: BackupSettings | None = None,
    on_part: Any = None,
) -> BackupResult:
    """Back ``env``'s database up into S3 and verify it (see the module docstring for the steps)."""
    settings = settings or load_settings(config)
    started = time.monotonic()
    facts = database_facts(database_url)
    pg_dump = pick_binary(
        "pg_dump",
        facts.server_major,
        settings.pg_bin_dir,
        purpose=f"dump PostgreSQL {facts.server_version} (database {facts.name})",
    )
    pg_restore = pick_binary(
        "pg_restore", pg_dump.major, settings.pg_bin_dir, purpose=f"verify a pg_dump {pg_dump.major} archive"
    )
    when = datetime.now(UTC)
    key = backup_key(settings, env, when, facts.newest_version)
    metadata = {
        "env": env,
        "database": facts.name,
        "server-version": facts.server_version,
        "newest-version": facts.newest_version if facts.newest_version is not None else "",
        "safemig-version": __version__,
        "pg-dump-version": pg_dump.version,
        "compression": settings.compression,
        "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "label": label,
    }
    extra = {"Metadata": encode_metadata(metadata), "ContentType": "application/octet-stream", **settings.put_args()}
    part_size = choose_part_size(settings.part_size, 2 * facts.size_bytes)

    conninfo, password = conninfo_without_password(database_url)
    archive = ArchiveCheck(pg_restore)
    try:
        dump = ChildProcess(pg_dump_args(pg_dump, conninfo, settings), env=child_env(password), stdout=-1)
    except BaseException:
        archive.kill()
        raise
    enlarge_pipe(dump.stdout.fileno())

    def dump_succeeded() -> None:
        """Runs after pg_dump's last byte, before the upload may complete."""
        problem = dump.failure(f"dumping {facts.name}")
        if problem:
            raise ToolError(
                problem, hint="nothing was stored (the upload was aborted); fix the cause and run the backup again"
            )
        archive.conclude(f"pg_dump's output for s3://{settings.bucket}/{key}")

    try:
        client = make_client(settings)  # boto3 loads while pg_dump reads the catalog and locks tables
        with transfer_progress(f"pg_dump {facts.name} -> s3://{settings.bucket}", progress) as advance:

            def on_chunk(chunk: memoryview) -> None:
                archive.feed(chunk)
                advance(len(chunk))

            uploaded = stream_to_s3(
                client,
                dump.stdout,
                bucket=settings.bucket,
                key=key,
                part_size=part_size,
                concurrency=settings.concurrency,
                extra_args=extra,
                finish=dump_succeeded,
                on_chunk=on_chunk,
                on_part=on_part,
            )
    except BaseException:
        dump.kill()
        archive.kill()
        raise
    dumped = time.monotonic()

    final_meta = {**metadata, "sha256": uploaded.sha256, "size": uploaded.size}
    try:
        _set_metadata(client, settings, key, uploaded.size, encode_metadata(final_meta))
        checked = verify_stored(
            client, settings.bucket, key, size=uploaded.size, sha256=uploaded.sha256, pg_restore=pg_restore
        )
    except BaseException as exc:
        failed_delete = delete_quietly(client, settings.bucket, key)
        if failed_delete and isinstance(exc, SafemigError):
            exc.hint = f"{exc.hint or ''} (could not delete the unverified object: {failed_delete})".strip()
        raise
    finished = time.monotonic()
    dump_s = dumped - started
    return BackupResult(
        uri=f"s3://{settings.bucket}/{key}",
        bucket=settings.bucket,
        key=key,
        size=uploaded.size,
        sha256=uploaded.sha256,
        duration_s=finished - started,
        throughput_bps=uploaded.size / dump_s if dump_s > 0 else 0.0,
        metadata={k: str(v) for k, v in final_meta.items() if v is not None},
        newest_version=facts.newest_version,
        parts=uploaded.parts,
        dump_s=dump_s,
        verify_s=finished - dumped,
        toc_entries=checked.toc_entries,
        pg_dump=pg_dump.path,
    )


def _set_metadata(client: Any, settings: BackupSettings, key: str, size: int, metadata: dict[str, str]) -> None:
    """Replace the object's metadata in place (a server-side copy onto itself)."""
    args = {
        "Metadata": metadata,
        "MetadataDirective": "REPLACE",
        "ContentType": "application/octet-stream",
        **settings.put_args(),
    }
    source = {"Bucket": settings.bucket, "Key": key}
    try:
        if size <= S3_MAX_COPY:
            client.copy_object(Bucket=settings.bucket, Key=key, CopySource=source, **args)
        else:  # over 5 GiB S3 needs a multipart copy, which the transfer manager does
            client.copy(source, settings.bucket, key, ExtraArgs=args)
    except Exception as exc:
        raise storage_error(exc, "recording the checksum on", settings.bucket, key) from None
