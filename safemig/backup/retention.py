"""``safemig backups prune``: keep what the retention policy says, remove the rest, never the newest good one.

The policy is ``keep_last`` (the newest N verified backups) and/or ``keep_days`` (every
backup younger than D days); a verified backup is kept when either keeps it, and the newest
verified backup is kept whatever they say. Unverified or inconsistent objects never count
towards ``keep_last`` (they cannot be restored) and are removed once they are older than a
day (younger, one may be a backup still verifying), as are multipart uploads left open that
long. Removing a backup removes every version of its dump, manifest and roles objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from safemig.backup.settings import BackupSettings, load_settings
from safemig.backup.store import (
    BackupInfo,
    OpenUpload,
    delete_all_versions,
    globals_key,
    list_env_backups,
    list_open_uploads,
    make_client,
    manifest_key,
)
from safemig.backup.upload import abort
from safemig.config import Config
from safemig.errors import StorageError, UsageError

GRACE = timedelta(days=1)


@dataclass
class PruneResult:
    """What a prune kept and removed (or would, with ``dry_run``)."""

    dry_run: bool
    kept: list[tuple[BackupInfo, str]] = field(default_factory=list)  # (backup, why kept)
    removed: list[tuple[BackupInfo, str]] = field(default_factory=list)  # (backup, why removed)
    aborted: list[OpenUpload] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "kept": [{"uri": b.uri, "status": b.status, "why": why} for b, why in self.kept],
            "removed": [{"uri": b.uri, "status": b.status, "why": why} for b, why in self.removed],
            "aborted_uploads": [
                {"key": u.key, "upload_id": u.upload_id, "age_s": round(u.age_s())} for u in self.aborted
            ],
        }


def plan_prune(
    infos: list[BackupInfo], *, keep_last: int | None, keep_days: float | None, now: datetime
) -> tuple[list[tuple[BackupInfo, str]], list[tuple[BackupInfo, str]]]:
    """(kept, removed), each with the reason; ``infos`` newest first."""
    kept: list[tuple[BackupInfo, str]] = []
    removed: list[tuple[BackupInfo, str]] = []
    verified_seen = 0
    for info in infos:
        age = now - info.created
        if not info.verified:
            if age > GRACE:
                removed.append((info, f"{info.status}, older than a day"))
            else:
                kept.append((info, f"{info.status}, but younger than a day (a backup may still be verifying)"))
            continue
        verified_seen += 1
        if verified_seen == 1:
            kept.append((info, "the newest verified backup"))
        elif keep_last is not None and verified_seen <= keep_last:
            kept.append((info, f"one of the newest {keep_last} verified"))
        elif keep_days is not None and age <= timedelta(days=keep_days):
            kept.append((info, f"younger than {keep_days:g} days"))
        else:
            removed.append((info, "outside the retention policy"))
    return kept, removed


def prune(
    config: Config,
    env: str,
    *,
    keep_last: int | None = None,
    keep_days: float | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Apply the retention policy (arguments, else ``backup.keep_last`` / ``keep_days``) to ``env``."""
    settings: BackupSettings = load_settings(config)
    config.env(env)  # an unknown env is a usage error
    keep_last = keep_last if keep_last is not None else settings.keep_last
    keep_days = keep_days if keep_days is not None else settings.keep_days
    if keep_last is None and keep_days is None:
        raise UsageError(
            "no retention policy: nothing says which backups to keep",
            hint="pass --keep-last N and/or --keep-days D, or set backup.keep_last / backup.keep_days",
        )
    for name, value in (("--keep-last", keep_last), ("--keep-days", keep_days)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be 1 or more, not {value}", hint=f"e.g. {name} 7")
    now = now or datetime.now(UTC)
    client = make_client(settings)
    infos = list_env_backups(client, settings, env)
    kept, removed = plan_prune(infos, keep_last=keep_last, keep_days=keep_days, now=now)
    stale = [u for u in list_open_uploads(client, settings, env) if u.age_s(now) > GRACE.total_seconds()]
    result = PruneResult(dry_run=dry_run, kept=kept, removed=removed, aborted=stale)
    if dry_run:
        return result
    for info, _ in removed:
        # the manifest first: should the rest fail, what is left is "unverified", never restored
        for key in (manifest_key(info.key), globals_key(info.key), info.key):
            problem = delete_all_versions(client, settings.bucket, key)
            if problem:
                raise StorageError(problem, hint="run prune again; what was already removed stays removed")
    for upload in stale:
        if not abort(client, settings.bucket, upload.key, upload.upload_id):
            raise StorageError(
                f"could not abort the open upload {upload.upload_id[:16]}... of s3://{settings.bucket}/{upload.key}",
                hint="the credentials need s3:AbortMultipartUpload; the bucket's lifecycle rule also removes it",
            )
    return result
