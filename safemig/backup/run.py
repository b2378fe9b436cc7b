"""``run_backup``: pg_dump streamed into S3, verified, and only then labelled as a good backup.

The steps, each refusing to go on when the previous one did not fully succeed:

1. read the database's facts (name, server version, size, newest applied migration) while the
   client programs tell their versions; pick a pg_dump able to dump that server and check
   ``backup.compression`` against it (exit 2);
2. start pg_dump, then, beside it: ``pg_dumpall --globals-only`` (the roles, no password hashes
   unless ``backup.role_passwords``) and the S3 client. Nothing is stored yet;
3. stream ``pg_dump -Fc`` into a multipart upload (memory bounded, SHA-256 on the fly, each
   part sent with its Content-MD5) and, at the same time, into the archive reader
   (:mod:`safemig.backup.archive` in a thread: every block read and inflated, what
   ``pg_restore -f /dev/null`` checks; pg_restore itself for lz4/zstd; skipped with
   ``archive_read=False``) and into
   ``pg_restore --list`` (the table of contents, from the first bytes). The upload completes
   only after pg_dump and pg_dumpall exited 0 and the archive was read to its end, otherwise it is
   aborted. A stall (``backup.stall_timeout`` without progress) stops pg_dump and aborts the
   upload;
4. prove S3 holds those bytes: the multipart ETag S3 returned must equal the one computed from
   the parts' MD5s (then the TOC listed in step 3 is the stored object's); where the store's
   ETag is not that (SSE-KMS), the object is read back, re-hashed and listed instead;
5. store the roles beside it (``KEY.globals.sql``), then the manifest (``KEY.manifest.json``:
   SHA-256, size, ETag, version id, metadata). Only an object with a manifest is verified; no
   copy of the object is made (a self-copy would keep a second full version on a versioned
   bucket).

A failure in 4 or 5 deletes what was stored (every version of it). Every failure is exit 3,
with pg_dump's or pg_restore's stderr or the S3 error, redacted; an interruption is exit 130.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from safemig import __version__
from safemig.backup.pgdump import (
    Binary,
    ChildProcess,
    child_env,
    conninfo_without_password,
    enlarge_pipe,
    pick_binary,
    probe_binaries,
)
from safemig.backup.progress import transfer_progress
from safemig.backup.roles import dump_globals
from safemig.backup.settings import BackupSettings, choose_part_size, load_settings
from safemig.backup.startgc import StartupGC
from safemig.backup.store import (
    backup_key,
    delete_all_versions,
    encode_metadata,
    globals_key,
    make_client,
    put_object,
    write_manifest,
)
from safemig.backup.upload import Stalled, stream_to_s3
from safemig.backup.verify import ArchiveCheck, TocCheck, Verified, verify_stored
from safemig.backup.watchdog import DaemonPool, Watchdog
from safemig.config import Config
from safemig.errors import ConfigError, DatabaseError, SafemigError, ToolError


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
    verified_by: str = ""

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
            "verified_by": self.verified_by,
            "metadata": self.metadata,
        }


def database_facts(url: str) -> DatabaseFacts:
    """Name, server version, size on disk and newest applied sqlx migration of ``url``'s database."""
    import psycopg

    from safemig.db import connect, describe, error_text

    with connect(url, autocommit=True, application_name="safemig backup") as conn:
        try:
            facts = conn.execute(
                "SELECT current_database(), current_setting('server_version'),"
                " current_setting('server_version_num')::int, pg_database_size(current_database()),"
                " to_regclass('_sqlx_migrations') IS NOT NULL"
            ).fetchone()
            assert facts is not None  # a SELECT without FROM returns one row
            name, version, num, size, ledger = facts
            newest_row = (
                conn.execute("SELECT max(version) FROM _sqlx_migrations WHERE success").fetchone() if ledger else None
            )
            newest = newest_row[0] if newest_row else None
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
    """``pg_dump -Fc -Z LEVEL`` to stdout; the conninfo carries no password.

    ``--lock-wait-timeout``: pg_dump takes an ACCESS SHARE lock on every table at its start; queued
    behind a pending DDL it would make everything after it queue too, so it gives up instead.
    """
    return [
        binary.path,
        "--format=custom",
        f"--compress={settings.compression}",
        f"--lock-wait-timeout={max(1, round(settings.lock_wait_timeout * 1000))}",
        "--no-password",
        f"--dbname={conninfo}",
    ]


def check_compression(settings: BackupSettings, pg_dump: Binary, where: str) -> None:
    """``backup.compression`` must be one the pg_dump about to run accepts (exit 2 before dumping)."""
    if settings.needs_pg_dump_16() and pg_dump.major < 16:
        raise ConfigError(
            f"backup.compression = {settings.compression!r} in {where} needs pg_dump 16 or newer, and {pg_dump.path}"
            f" is {pg_dump.version}",
            hint=f"use a gzip level 0-9 (e.g. compression = 1) with pg_dump {pg_dump.major}, or set backup.pg_bin_dir"
            " to a PostgreSQL 16+ bin directory",
        )


_LARGEST_BLOCKS = 100  # every listing reads each manifest: 7,000 tables must not make it 130 KB


def _data_bytes(archive: ArchiveCheck) -> dict[str, Any]:
    assert archive.summary is not None
    sizes = archive.summary.block_bytes
    largest = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:_LARGEST_BLOCKS]
    return {
        "total": sum(sizes.values()),
        "blocks": len(sizes),
        "largest": {str(dump_id): size for dump_id, size in sorted(largest)},
    }


def _format_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


def run_backup(
    config: Config,
    env: str,
    *,
    database_url: str,
    label: str | None = None,
    progress: bool = False,
    settings: BackupSettings | None = None,
    on_part: Any = None,
    archive_read: bool = True,
) -> BackupResult:
    """Back ``env``'s database up into S3 and verify it (see the module docstring for the steps).

    ``archive_read=False`` skips the in-stream read of every block: for a caller
    that restores the backup right away (the deploy's rehearsal), whose restore is that read.
    """
    with StartupGC() as gc_pause:
        return _run_backup(config, env, database_url, label, progress, settings, on_part, archive_read, gc_pause)


def _run_backup(
    config: Config,
    env: str,
    database_url: str,
    label: str | None,
    progress: bool,
    settings: BackupSettings | None,
    on_part: Any,
    archive_read: bool,
    gc_pause: StartupGC,
) -> BackupResult:
    settings = settings or load_settings(config)
    started = time.monotonic()
    # pg_dump starts as early as it can: the three --version probes run while the database is asked
    # for its facts; the roles, the archive checks and the S3 client (~0.2 s of botocore loading)
    # come after pg_dump started, beside its catalog reads
    probe_binaries(["pg_dump", "pg_restore", "pg_dumpall"], settings.pg_bin_dir)
    facts = database_facts(database_url)
    pg_dump = pick_binary(
        "pg_dump",
        facts.server_major,
        settings.pg_bin_dir,
        purpose=f"dump PostgreSQL {facts.server_version} (database {facts.name})",
    )
    check_compression(settings, pg_dump, config.source)
    pg_restore = pick_binary(
        "pg_restore", pg_dump.major, settings.pg_bin_dir, purpose=f"verify a pg_dump {pg_dump.major} archive"
    )
    pg_dumpall = pick_binary(
        "pg_dumpall", facts.server_major, settings.pg_bin_dir, purpose="store the roles beside the backup"
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
    where = f"pg_dump's output for s3://{settings.bucket}/{key}"

    conninfo, password = conninfo_without_password(database_url)
    dump = ChildProcess(pg_dump_args(pg_dump, conninfo, settings), env=child_env(password), stdout=-1)
    checks: list[ArchiveCheck | TocCheck] = []
    try:
        enlarge_pipe(dump.stdout.fileno())
        archive = ArchiveCheck(pg_restore) if archive_read else None
        if archive is not None:
            checks.append(archive)
        toc = TocCheck(pg_restore)
        checks.append(toc)
        # last: loading botocore holds the GIL for ~0.2 s, which would slow the process starts above
        helpers = DaemonPool(2, "backup-start")
        roles_future = helpers.submit(
            lambda: dump_globals(pg_dumpall, conninfo, password, role_passwords=settings.role_passwords)
        )
        client_future = helpers.submit(lambda: make_client(settings))
        client_future.add_done_callback(gc_pause.resume)
        helpers.shutdown()
    except BaseException:
        dump.kill()
        for check in checks:
            check.kill()
        raise

    def roles_failed() -> None:
        """pg_dumpall failed: refuse the backup now, not after the whole dump."""
        if roles_future.done() and roles_future.exception() is not None:
            roles_future.result()

    toc_lines: list[str] = []

    def dump_succeeded() -> None:
        """Runs after pg_dump's last byte, before the upload may complete."""
        problem = dump.failure(f"dumping {facts.name}")
        if problem:
            raise ToolError(problem, hint="fix the cause and run the backup again")
        if archive is not None:
            archive.conclude(where)
        toc_lines.extend(toc.conclude(where))
        roles_future.result()

    def stop_dump() -> None:
        """The stall: pg_dump goes (its session, snapshot and locks with it), then the archive checks."""
        dump.kill()
        for check in checks:
            check.kill()

    def stalled() -> Stalled:
        return Stalled(
            f"no progress for {_format_duration(settings.stall_timeout)} on the dump of {facts.name} or the upload to"
            f" s3://{settings.bucket}/{key} (backup.stall_timeout): pg_dump was stopped, its snapshot and locks"
            " released",
            hint="check S3's reachability and the database; raise backup.stall_timeout for a slow link",
        )

    try:
        with (
            Watchdog(settings.stall_timeout, stop_dump) as watchdog,
            transfer_progress(f"pg_dump {facts.name} -> s3://{settings.bucket}", progress) as advance,
        ):

            def on_chunk(chunk: memoryview) -> None:
                if archive is not None:
                    archive.feed(chunk)
                if toc.reading:
                    toc.feed(chunk)
                roles_failed()
                advance(len(chunk))

            uploaded = stream_to_s3(
                client_future,
                dump.stdout,
                bucket=settings.bucket,
                key=key,
                part_size=part_size,
                concurrency=settings.concurrency,
                extra_args=extra,
                finish=dump_succeeded,
                on_chunk=on_chunk,
                on_part=on_part,
                watchdog=watchdog,
                stalled=stalled,
            )
        client = client_future.result()
        roles = roles_future.result()
    except BaseException:
        stop_dump()
        raise
    dumped = time.monotonic()

    globals_key_ = globals_key(key)
    try:
        if uploaded.etag_matches:  # S3 checked every part's MD5 and assembled exactly those parts
            # so the TOC pg_restore --list read from the stream is the stored object's
            checked = Verified(
                size=uploaded.size, sha256=uploaded.sha256, toc_entries=len(toc_lines), table_data_entries=0
            )
            how = "etag"
        else:  # an ETag that is not the parts' MD5s (SSE-KMS, some stores): read every byte back
            checked = verify_stored(
                client, settings.bucket, key, size=uploaded.size, sha256=uploaded.sha256, pg_restore=pg_restore
            )
            how = "read-back"
        put_object(client, settings, globals_key_, roles, "text/plain")
        write_manifest(
            client,
            settings,
            key,
            {
                "sha256": uploaded.sha256,
                "size": uploaded.size,
                "etag": uploaded.etag,
                "version_id": uploaded.version_id,
                "parts": uploaded.parts,
                "metadata": {k: str(v) for k, v in metadata.items() if v is not None},
                "verified": {
                    "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "archive_read": archive_read,
                    "stored": how,
                },
                # the compressed bytes of the data blocks: total, count, and the largest blocks' by dump
                # ID (the number that starts an entry's `pg_restore -l` line), for a restore to choose
                # its mode by bytes (docs/backup.md)
                **({"data_bytes": _data_bytes(archive)} if archive is not None and archive.summary else {}),
                "globals": {
                    "key": globals_key_,
                    "sha256": hashlib.sha256(roles).hexdigest(),
                    "size": len(roles),
                    "role_passwords": settings.role_passwords,
                },
            },
        )
    except BaseException as exc:
        failed = [
            problem
            for problem in (
                delete_all_versions(client, settings.bucket, globals_key_),
                delete_all_versions(client, settings.bucket, key),
            )
            if problem
        ]
        if isinstance(exc, SafemigError):
            exc.hint = (
                f"{exc.hint or ''} (could not delete the unverified object: {failed[0]})"
                if failed
                else f"{exc.hint or ''} (the unverified object was deleted)"
            ).strip()
        raise
    finished = time.monotonic()
    dump_s = dumped - started
    final_meta = {**metadata, "sha256": uploaded.sha256, "size": uploaded.size}
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
        verified_by=(f"{archive.read_by}; " if archive is not None else "")
        + ("S3 ETag = parts' MD5s" if how == "etag" else "read back and re-hashed"),
    )
