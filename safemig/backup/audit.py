"""``safemig backups verify``: prove a stored backup restorable, on demand (exit 0 or 1).

Three levels, each including the ones before:

1. the object is what its manifest recorded (size, ETag, version) and its bytes hash to the
   recorded SHA-256;
2. every block of the archive is read and inflated (fed the same bytes as they are hashed) by
   :class:`~safemig.backup.verify.ArchiveCheck` (safemig's reader; ``pg_restore -f /dev/null``
   for lz4/zstd), so each data block decompresses and the archive is complete;
3. with ``scratch_url``: a real restore into a scratch database created on that server (and
   dropped afterwards), with ``--no-owner --no-privileges`` so the server needs none of the
   backup's roles.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from safemig.backup.fetch import Download, RestoreBound
from safemig.backup.pgdump import pick_binary
from safemig.backup.restore import check_restorable, resolve_source, restore_backup
from safemig.backup.settings import load_settings
from safemig.backup.store import make_client
from safemig.backup.verify import ArchiveCheck
from safemig.config import Config
from safemig.errors import CheckFailed, ToolError


@dataclass(frozen=True)
class VerifyResult:
    """A backup proven whole."""

    uri: str
    size: int
    sha256: str
    archive_read: bool
    restored_into: str | None
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "size": self.size,
            "sha256": self.sha256,
            "archive_read": self.archive_read,
            "restored_into": self.restored_into,
            "duration_s": round(self.duration_s, 3),
        }


def verify_backup(config: Config, env: str, source: str, *, scratch_url: str | None = None) -> VerifyResult:
    """Check ``source`` (``latest`` or ``s3://...``) at levels 1-2, and 3 with ``scratch_url``.

    A backup that fails a check is :class:`CheckFailed` (exit 1); S3 or PostgreSQL failing
    to answer stays an external failure (exit 3).
    """
    settings = load_settings(config)
    client = make_client(settings)
    started = time.monotonic()
    with RestoreBound(settings.stall_timeout, f"verifying a backup of env {env}") as bound:
        bound.consequence = "the backup was not verified (nothing was changed)"
        info = bound.result(bound.submit(lambda: resolve_source(client, config, env, source)))
        check_restorable(info)
        bound.what = f"the download of {info.uri} for its verification"
        dump_version = info.metadata.get("pg-dump-version", "")
        major = int(dump_version.split(".")[0]) if dump_version.split(".")[0].isdigit() else 0
        pg_restore = pick_binary(
            "pg_restore", major, settings.pg_bin_dir, purpose=f"read a pg_dump {dump_version} archive"
        )
        check = ArchiveCheck(pg_restore)
        watched = None  # pg_restore, once the header sent an lz4/zstd archive to it
        digest = hashlib.sha256()
        seen = 0
        download = Download(client, info.bucket, info.key, "verifying", bound)
        try:
            for chunk in download:
                digest.update(chunk)
                seen += len(chunk)
                check.feed(chunk)
                if watched is None and check.child is not None:
                    watched = check.child
                    bound.watch(watched, bound.consequence)
                bound.beat()
            bound.check()  # the archive check stopped by the bound ended the stream as if it were whole
        except BaseException:
            check.kill()
            raise
        finally:
            download.close()
        try:
            if seen != info.recorded_size or digest.hexdigest() != info.sha256:
                check.kill()
                raise CheckFailed(
                    f"{info.uri} does not match its recorded checksum ({seen} bytes, SHA-256 {digest.hexdigest()};"
                    f" recorded {info.recorded_size} bytes, {info.sha256})",
                    hint="the object was changed or damaged in storage: do not rely on it; take a new backup",
                )
            check.conclude(info.uri)
        except ToolError as exc:  # the bytes are the recorded ones, and they are not a readable archive
            bound.check()
            raise CheckFailed(exc.message, hint="the backup is unusable: take a new one") from None
        finally:
            if watched is not None:
                bound.unwatch(watched, bound.consequence)
    restored_into = _scratch_restore(config, env, info.uri, scratch_url) if scratch_url else None
    return VerifyResult(
        uri=info.uri,
        size=seen,
        sha256=digest.hexdigest(),
        archive_read=True,
        restored_into=restored_into,
        duration_s=time.monotonic() - started,
    )


def _scratch_restore(config: Config, env: str, uri: str, server_url: str) -> str:
    """Restore into a new database on ``server_url``'s server, then drop it; returns its name."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from safemig.db import connect, describe, error_text
    from safemig.errors import DatabaseError

    name = f"safemig_verify_{uuid.uuid4().hex[:12]}"
    with connect(server_url, autocommit=True, application_name="safemig verify") as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot create a scratch database on {describe(server_url)}: {error_text(exc)}",
                hint="the role needs CREATEDB on that server",
            ) from None
    try:
        scratch = make_conninfo(server_url, dbname=name)
        try:
            restore_backup(
                config, env, source=uri, target_url=scratch, no_owner=True, no_privileges=True, tablespaces="none"
            )
        except ToolError as exc:
            raise CheckFailed(f"restoring {uri} into a scratch database failed: {exc.message}", hint=exc.hint) from None
    finally:
        with connect(server_url, autocommit=True, application_name="safemig verify") as conn:
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            except psycopg.Error:
                pass  # reported nowhere better than the restore's own outcome; the name says what it is
    return name
