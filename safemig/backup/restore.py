"""``restore_backup``: restore a verified backup from S3, never committing a byte of a damaged one.

Three ways, chosen per restore. The first two check the object's SHA-256 before anything is
committed; the third, only for a target its caller owns and drops, checks it after.

* **Streamed, one transaction** (``jobs == 1``, the restore fits one transaction, every data
  block is wanted): the object streams into ``pg_restore --single-transaction`` while it is
  hashed, and the last chunk is held back until the checksum matches. pg_restore cannot
  finish, so cannot commit, without those last bytes. No disk is used.
* **Spooled** (``jobs > 1``; or more locks than a fraction of the target's lock table, e.g.
  thousands of tables or large objects; or a ``select`` that leaves out data pg_restore would
  otherwise have to read to the end): the object is downloaded to a private temporary
  directory (``backup.spool_dir``, else ``TMPDIR``) and hashed as it is written; only when size
  and SHA-256 match does ``pg_restore [-j N]`` run on the file. Costs the archive's size in
  local disk and the download time before the restore starts (see docs/backup.md).
* **Streamed, verified after** (``verify_before_commit=False``, ``jobs == 1``, where the first
  way does not apply, e.g. a ``select`` that leaves data out): the object streams into one
  ``pg_restore [-L]``, which reads a custom-format archive from a pipe sequentially and commits
  as it goes. Every byte written to its stdin is hashed; if it stops early (it had every entry
  it was asked for), the rest of the object is still read and hashed to its end, and a size or
  SHA-256 mismatch raises :class:`CheckFailed` after pg_restore ended. The target may then hold
  restored rows: the caller drops it (the deploy's rehearsal restores into a scratch database
  that nothing reads before the restore returned, and drops it in a ``finally``).

A non-empty target is refused unless the caller asked to ``clean`` it (the CLI also wants an
explicit confirmation flag for that).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safemig.backup import tablespaces as spaces
from safemig.backup import toc as tocs
from safemig.backup.fetch import Download, RestoreBound, kill_tree
from safemig.backup.pgdump import (
    Binary,
    ChildProcess,
    SocketStdin,
    child_env,
    conninfo_without_password,
    pick_binary,
    write_all,
)
from safemig.backup.progress import transfer_progress
from safemig.backup.settings import BackupSettings, load_settings
from safemig.backup.startgc import StartupGC
from safemig.backup.store import (
    BackupInfo,
    backup_info,
    head_backup,
    list_env_backups,
    make_client,
    parse_uri,
    read_manifest,
)
from safemig.backup.verify import toc_from_head
from safemig.config import Config
from safemig.errors import CheckFailed, DatabaseError, SafemigError, ToolError, UsageError

# A single-transaction restore may use at most this share of the target's shared lock table
# (max_locks_per_transaction x (max_connections + max_prepared_transactions)): the rest is
# left to the sessions already running there.
_LOCK_SHARE = 0.5
_SPOOL_MARGIN = 64 * 1024 * 1024
# Entries whose restore reads a data block from the stream.
_DATA = {"TABLE DATA", "BLOBS", "BLOB", "LARGE OBJECT"}
_CHANGED_HINT = "the object was changed or damaged in storage; restore another backup (`safemig backups --env ENV`)"

# Every kind of object a user can create in a database, outside extensions and the system
# schemas: a target holding any of them is not empty.
_USER_OBJECTS = r"""
WITH ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
user_ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_toast%'
    AND nspname NOT LIKE 'pg\_temp%'
)
SELECT kind, n FROM (
  SELECT 'schemas' AS kind, count(*) AS n FROM user_ns
    WHERE nspname <> 'public' AND oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_namespace'::regclass)
  UNION ALL SELECT 'tables, views or sequences', count(*) FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND c.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_class'::regclass)
  UNION ALL SELECT 'functions', count(*) FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace
    WHERE p.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_proc'::regclass)
  UNION ALL SELECT 'types or domains', count(*) FROM pg_type t JOIN user_ns n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r', 'm')
      AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.oid = t.typelem AND el.typarray = t.oid)
      AND t.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_type'::regclass)
  UNION ALL SELECT 'large objects', count(*) FROM pg_largeobject_metadata
  UNION ALL SELECT 'extensions', count(*) FROM pg_extension WHERE extname <> 'plpgsql'
  UNION ALL SELECT 'operators', count(*) FROM pg_operator o JOIN user_ns n ON n.oid = o.oprnamespace
    WHERE o.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_operator'::regclass)
  UNION ALL SELECT 'collations', count(*) FROM pg_collation c JOIN user_ns n ON n.oid = c.collnamespace
    WHERE c.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_collation'::regclass)
  UNION ALL SELECT 'text search configurations', count(*) FROM pg_ts_config c JOIN user_ns n ON n.oid = c.cfgnamespace
    WHERE c.oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_ts_config'::regclass)
  UNION ALL SELECT 'foreign servers', count(*) FROM pg_foreign_server
  UNION ALL SELECT 'publications', count(*) FROM pg_publication
  UNION ALL SELECT 'event triggers', count(*) FROM pg_event_trigger
    WHERE oid NOT IN (SELECT objid FROM ext WHERE classid = 'pg_event_trigger'::regclass)
) AS counts WHERE n > 0
"""
_TARGET_FACTS = """
SELECT current_database(), current_setting('max_locks_per_transaction')::int
  * (current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int)
"""


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore."""

    uri: str
    target: str  # masked URL
    database: str
    size: int
    sha256: str
    duration_s: float
    cleaned: bool
    # "stream" (one transaction, no disk), "spool" (verified local copy, then pg_restore) or
    # "stream-verify-after" (no disk, committed as it went, verified to the object's end afterwards)
    mode: str = "stream"
    jobs: int = 1
    entries: int = 0  # TOC entries restored
    roles_created: tuple[str, ...] = ()
    tablespaces_created: tuple[str, ...] = ()
    tablespaces_omitted: tuple[str, ...] = ()  # missing on the target: restored into its default tablespace
    prepare_s: float = 0.0  # finding the backup, checking the target, reading the TOC
    download_s: float = 0.0  # the verified local copy (spool mode), before pg_restore starts
    timeline: dict[str, float] = field(default_factory=dict)  # phase -> seconds since the call
    notes: tuple[str, ...] = ()  # what the stall bound could not watch (its probe lost its session)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "target": self.target,
            "database": self.database,
            "size": self.size,
            "sha256": self.sha256,
            "duration_s": round(self.duration_s, 3),
            "cleaned": self.cleaned,
            "mode": self.mode,
            "jobs": self.jobs,
            "entries": self.entries,
            "roles_created": list(self.roles_created),
            "tablespaces_created": list(self.tablespaces_created),
            "tablespaces_omitted": list(self.tablespaces_omitted),
            "prepare_s": round(self.prepare_s, 3),
            "download_s": round(self.download_s, 3),
            "timeline": dict(self.timeline),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Target:
    database: str
    objects: dict[str, int]
    lock_slots: int


def resolve_source(client: Any, config: Config, env: str, source: str) -> BackupInfo:
    """``latest`` (the env's newest verified, consistent backup) or an ``s3://`` URI -> its description."""
    settings = load_settings(config)
    if source == "latest":
        infos = list_env_backups(client, settings, env)
        for info in infos:
            if info.verified:
                return info
        damaged = [info for info in infos if info.sha256 and info.problem]
        if damaged:
            raise CheckFailed(
                f"no verified backup of env {env} is intact: the newest, {damaged[0].uri}, is not what was recorded"
                f" at backup time ({damaged[0].problem}): nothing was restored",
                hint=_CHANGED_HINT,
            )
        raise UsageError(
            f"no verified backup of env {env} under s3://{settings.bucket}/{settings.env_prefix(env)}",
            hint=f"run `safemig backup --env {env}` first, or pass --from s3://BUCKET/KEY",
        )
    bucket, key = parse_uri(source)
    return head_backup(client, bucket, key)


def check_restorable(info: BackupInfo) -> None:
    """Refuse (exit 1) an object without a recorded checksum or whose size is not the recorded one."""
    if not info.sha256:
        raise CheckFailed(
            f"{info.uri} has no recorded checksum: it is not a verified safemig backup",
            hint="an interrupted backup leaves such an object; pick another with `safemig backups --env ENV`",
        )
    if info.problem:
        raise CheckFailed(
            f"{info.uri} is not what was recorded at backup time ({info.problem}): nothing was restored",
            hint=_CHANGED_HINT,
        )


def _target_state(url: str) -> _Target:
    """The target's name, the user objects it holds by kind, and the size of its lock table."""
    import psycopg

    from safemig.db import connect, describe, error_text

    with connect(url, autocommit=True, application_name="safemig restore") as conn:
        try:
            facts = conn.execute(_TARGET_FACTS).fetchone()
            assert facts is not None  # a SELECT without FROM returns one row
            name, slots = facts
            objects = {kind: int(n) for kind, n in conn.execute(_USER_OBJECTS).fetchall()}
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot inspect {describe(url)}: {error_text(exc)}") from None
    return _Target(database=name, objects=objects, lock_slots=int(slots))


def _describe_objects(objects: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in objects.items())


def restore_backup(
    config: Config,
    env: str,
    *,
    source: str,
    target_url: str,
    clean: bool = False,
    progress: bool = False,
    jobs: int = 1,
    no_owner: bool = False,
    no_privileges: bool = False,
    select: tocs.Select | None = None,
    create_roles: bool = False,
    verify_before_commit: bool = True,
    tablespaces: str = "keep",
    tablespace_locations: Mapping[str, str] | None = None,
) -> RestoreResult:
    """Restore ``source`` (``latest`` or ``s3://...``) into ``target_url``'s database.

    ``jobs``: pg_restore's parallel jobs (more than 1 restores from a verified local copy, unless
    the archive's TOC shows they cannot run anything side by side: then it streams, in one job).
    ``no_owner`` / ``no_privileges``: pg_restore's ``--no-owner`` / ``--no-privileges``, for a
    target without the backup's roles. ``select`` receives the archive's ``pg_restore -l``
    lines and returns those to restore (kept in the archive's order, passed with ``-L``).
    ``create_roles``: first create, on the target's server, the roles stored beside the backup
    (``pg_dumpall --globals-only``) that it lacks; existing roles are left as they are.
    ``verify_before_commit=False`` (with ``jobs=1``): a restore that would be spooled streams
    instead, and the checksum is checked once the whole object was read, after pg_restore may
    have committed. Only for a target the caller owns, reads nothing from before this returns,
    and drops on any error (the rehearsal's scratch database); never for a user's database.
    ``tablespaces``: what to do about tablespaces the archive's objects use and the target
    lacks, checked before anything is done: ``"keep"`` refuses (exit 2), ``"none"`` restores
    with ``--no-tablespaces``, ``"none-if-missing"`` does that only when some are missing (and
    says which), ``"create"`` creates them from the stored globals, in ``tablespace_locations``
    (name -> directory) where given (:mod:`safemig.backup.tablespaces`).

    Refuses (exit 1) an object without a recorded checksum, a non-empty target without
    ``clean``, and any byte stream whose size or SHA-256 differs from the recorded ones; in
    every refusal nothing is committed, except with ``verify_before_commit=False``, where the
    target may hold part of the restore and must be dropped. ``backup.stall_timeout`` without
    progress on the download or in pg_restore stops it (exit 3, :class:`RestoreStalled`).

    One GET serves everything: its headers describe the object (no HEAD), the TOC is read from
    its first bytes, and the rest follows into pg_restore or the local copy. The target's
    checks and the manifest's read run beside it.
    """
    from safemig.db import describe

    began = time.monotonic()
    if jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {jobs}", hint="e.g. --jobs 4")
    settings = load_settings(config)
    with (
        StartupGC() as gc_pause,  # resumed once pg_restore starts: botocore's and psycopg's loading are behind
        RestoreBound(settings.stall_timeout, f"restoring into {describe(target_url)}", target_url) as bound,
    ):
        # `pg_restore --version` of the first candidate, beside S3's requests (the archive's version is not known yet)
        first = bound.submit(lambda: pick_binary("pg_restore", 0, settings.pg_bin_dir, purpose="read the archive"))
        client = make_client(settings)
        download, manifest = _start(client, config, env, source, bound)
        # psycopg's import and the target's queries while S3 answers: started after the GET, since
        # Python runs one thread at a time and the GET is the longer way to the first restored byte
        checking = bound.submit(lambda: _target_state(target_url))
        try:
            info = backup_info(download.bucket, download.key, download.headers(), bound.result(manifest))
            return _restore(
                client,
                info,
                download,
                checking,
                first,
                bound,
                settings,
                target_url,
                began,
                gc_pause,
                clean=clean,
                progress=progress,
                jobs=jobs,
                select=select,
                create_roles=create_roles,
                verify_before_commit=verify_before_commit,
                no_owner=no_owner,
                no_privileges=no_privileges,
                tablespaces=tablespaces,
                tablespace_locations=tablespace_locations,
            )
        finally:
            download.close()


def _start(
    client: Any, config: Config, env: str, source: str, bound: RestoreBound
) -> tuple[Download, Future[dict[str, Any] | None]]:
    """The object's GET, under way, and its manifest (being read beside it for an ``s3://`` URI).

    The GET's own headers (size, ETag, version) are what is compared with the manifest, so the
    bytes restored are those of the object described; no HEAD is needed.
    """
    manifest: Future[dict[str, Any] | None]
    if source == "latest":
        found = bound.result(bound.submit(lambda: resolve_source(client, config, env, source)))
        download = Download(client, found.bucket, found.key, "restoring", bound)
        manifest = Future()
        manifest.set_result(found.manifest)
    else:
        bucket, key = parse_uri(source)
        download = Download(client, bucket, key, "restoring", bound)
        manifest = bound.submit(lambda: read_manifest(client, bucket, key))
    return download, manifest


def _restore(
    client: Any,
    info: BackupInfo,
    download: Download,
    checking: Future[_Target],
    first: Future[Binary],
    bound: RestoreBound,
    settings: BackupSettings,
    target_url: str,
    began: float,
    gc_pause: StartupGC,
    *,
    clean: bool,
    progress: bool,
    jobs: int,
    select: tocs.Select | None,
    create_roles: bool,
    verify_before_commit: bool,
    no_owner: bool,
    no_privileges: bool,
    tablespaces: str,
    tablespace_locations: Mapping[str, str] | None,
) -> RestoreResult:
    from safemig.db import describe

    bound.mark("object described")
    check_restorable(info)
    bound.what = f"the download of {info.uri} or pg_restore into {describe(target_url)}"
    dump_version = info.metadata.get("pg-dump-version", "")
    pg_restore = bound.result(first)  # pick_binary's first choice for any version ...
    if pg_restore.major < _major(dump_version):  # ... and the full search only when it is too old
        pg_restore = pick_binary(
            "pg_restore", _major(dump_version), settings.pg_bin_dir, purpose=f"read a pg_dump {dump_version} archive"
        )
    chunks = _checked_chunks(iter(download), info, _NOTHING_RESTORED if verify_before_commit else _DROP_TARGET)
    head: list[bytes] = []  # the chunks the TOC was read from: fed to pg_restore (or the local copy) first
    try:
        reading = f"the download of {info.uri} or pg_restore --list reading its table of contents"
        with bound.watching(reading) as lister_started:
            toc = toc_from_head(chunks, pg_restore, info.uri, head, started=lister_started)
    except ToolError:
        bound.check()  # pg_restore --list was stopped by the stall bound
        _refuse_if_damaged(head, chunks, info)  # a damaged object is exit 1, whichever byte the damage hit
        raise
    bound.mark("toc read")
    target = bound.result(checking)
    bound.mark("target checked")
    if target.objects and not clean:
        raise CheckFailed(
            f"target database {target.database} at {describe(target_url)} is not empty"
            f" ({_describe_objects(target.objects)})",
            hint="restore into a fresh database (createdb NAME), or pass --clean --confirm-clean to drop and replace"
            " what the backup contains",
        )
    placement = bound.step(
        lambda: spaces.plan_placement(
            client,
            info,
            pg_restore,
            target_url,
            policy=tablespaces,
            locations=tablespace_locations,
            create_roles=create_roles,
            no_owner=no_owner,
            no_privileges=no_privileges,
            head=head,
            bound=bound,
        )
    )
    mode = _mode(toc, _choose(toc, select, clean), target, jobs, verify_before_commit)
    roles: list[str] = []
    if create_roles:
        from safemig.backup.roles import create_missing_roles

        roles = bound.step(lambda: create_missing_roles(client, info, target_url, bound))
    created: list[str] = []
    prepared = time.monotonic() - began
    started = time.monotonic()
    bound.mark("restore started")
    gc_pause.resume()
    try:
        bound.step(lambda: spaces.create_tablespaces(target_url, placement, bound, created))
        size, download_s, entries = _run_restore(
            info,
            settings,
            pg_restore,
            target,
            target_url,
            toc=toc,
            chunks=itertools.chain(head, chunks),
            mode=mode,
            select=select,
            clean=clean,
            options=(["--no-owner"] if no_owner else [])
            + (["--no-privileges"] if no_privileges else [])
            + list(placement.options),
            jobs=jobs,
            progress=progress,
            bound=bound,
        )
    except BaseException as exc:
        from safemig.backup.roles import undo_created

        # tablespaces: none unless a restore that was not one transaction failed; roles own nothing, since the
        # refused restore committed nothing; each wait bounded (the bound itself may be what fired)
        left = undo_created(target_url, roles, created, settings.stall_timeout)
        if left and isinstance(exc, SafemigError):
            exc.message = f"{exc.message}; {left}"
        raise
    return RestoreResult(
        uri=info.uri,
        target=describe(target_url),
        database=target.database,
        size=size,
        sha256=info.sha256 or "",
        duration_s=time.monotonic() - started,
        cleaned=clean,
        mode=mode,
        jobs=jobs if mode == "spool" else 1,
        entries=entries,
        roles_created=tuple(roles),
        tablespaces_created=tuple(created),
        tablespaces_omitted=placement.omitted,
        prepare_s=prepared,
        download_s=download_s,
        timeline={**bound.timeline, "done": round(time.monotonic() - began, 3)},
        notes=tuple(bound.notes),
    )


def _mode(toc: list[str], chosen: list[str], target: _Target, jobs: int, verify_before_commit: bool) -> str:
    """``stream`` when one transaction can hold the restore, every data block is wanted, and ``-j``
    would not run anything side by side (``jobs`` 1, or the TOC has a single piece of heavy work
    per phase: then the download overlaps the restore instead of preceding it); else ``spool``,
    or ``stream-verify-after`` for a caller that drops the target on failure."""
    fits = not _drops_data(toc, chosen) and tocs.lock_slots(chosen) <= target.lock_slots * _LOCK_SHARE
    if fits and (jobs == 1 or not tocs.parallel_work(chosen)):
        return "stream"
    if jobs == 1 and not verify_before_commit:
        return "stream-verify-after"
    return "spool"


def _choose(toc: list[str], select: tocs.Select | None, clean: bool) -> list[str]:
    chosen = tocs.apply_select(toc, select)
    return tocs.order_for_clean(chosen) if clean else chosen


def _drops_data(toc: list[str], chosen: list[str]) -> bool:
    """Whether a data block pg_restore would have to read is left out (it could end before the stream does)."""
    kept = set(chosen)
    return any(tocs.desc(line) in _DATA for line in toc if line not in kept)


def _run_restore(
    info: BackupInfo,
    settings: BackupSettings,
    pg_restore: Binary,
    target: _Target,
    target_url: str,
    *,
    toc: list[str],
    chunks: Iterator[bytes],
    mode: str,
    select: tocs.Select | None,
    clean: bool,
    options: list[str],
    jobs: int,
    progress: bool,
    bound: RestoreBound,
) -> tuple[int, float, int]:
    """(bytes restored, seconds spent on the verified local copy before pg_restore started, TOC entries).

    ``toc``: read from the head of ``chunks`` (the object from its first byte), which are the
    bytes then streamed into pg_restore or written to the local copy and hashed: the list given
    to pg_restore describes exactly the bytes verified.
    """
    from psycopg.conninfo import make_conninfo

    bound.check()  # a stall that fired as the last step ended: the watchdog fires once, so say it now
    conninfo, password = conninfo_without_password(target_url)
    # pg_restore's sessions carry the bound's name: its progress probe and its stop find them
    conninfo = make_conninfo(conninfo, application_name=bound.application_name)
    where = f"restoring into {target.database}"
    with tempfile.TemporaryDirectory(prefix="safemig-restore-", dir=settings.spool_dir) as workdir:
        chosen = _choose(toc, select, clean)
        args = [pg_restore.path, "--exit-on-error", "--no-password", *options]
        if chosen != toc:
            list_file = Path(workdir) / "restore.list"
            list_file.write_text("\n".join(chosen) + "\n")
            args.append(f"--use-list={list_file}")
        if clean:
            args += ["--clean", "--if-exists"]
        args.append(f"--dbname={conninfo}")
        if mode == "stream":
            return _restore_streamed(chunks, info, args, password, where, progress, bound), 0.0, len(chosen)
        if mode == "stream-verify-after":
            seen = _restore_streamed_verify_after(chunks, info, args, password, where, progress, bound)
            return seen, 0.0, len(chosen)
        spool, seen, downloaded = _download_verified(chunks, info, progress, Path(workdir), bound)
        _restore_file(args, spool, password, where, jobs, bound)
        return seen, downloaded, len(chosen)


_NOTHING_RESTORED = "nothing was restored"
_DROP_TARGET = "the target was restored into before the checksum was known and must be dropped"


def _checked_chunks(chunks: Iterator[bytes], info: BackupInfo, consequence: str) -> Generator[bytes, None, None]:
    """``chunks``; raises :class:`CheckFailed` as soon as more than the recorded size arrives."""
    limit = info.expected_size
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise CheckFailed(
                f"{info.uri} does not match its recorded checksum (more than the {limit} bytes recorded):"
                f" {consequence}",
                hint=_CHANGED_HINT,
            )
        yield chunk


def _refuse_if_damaged(head: list[bytes], rest: Iterator[bytes], info: BackupInfo) -> None:
    """pg_restore could not read the TOC: raise the checksum mismatch if the object is not what was stored.

    A byte damaged in the first part of the object (with thousands of tables the TOC is most of
    it) stops ``pg_restore --list`` before any data is read; whether that is damage (exit 1) or
    an archive pg_restore cannot read (exit 3) is for the checksum to say, so the rest of the
    object is read and hashed. Nothing was restored either way.
    """
    digest = hashlib.sha256()
    seen = 0
    for chunk in itertools.chain(head, rest):
        digest.update(chunk)
        seen += len(chunk)
    if not _intact(info, seen, digest):
        raise _mismatch(info, seen, digest.hexdigest())


def _intact(info: BackupInfo, seen: int, digest: Any) -> bool:
    """Are the ``seen`` bytes hashed into ``digest`` the object as stored: its recorded SHA-256 and size?"""
    return digest.hexdigest() == info.sha256 and seen == info.expected_size


def _mismatch(info: BackupInfo, seen: int, digest: str, consequence: str = _NOTHING_RESTORED) -> CheckFailed:
    return CheckFailed(
        f"{info.uri} does not match its recorded checksum ({seen} bytes, SHA-256 {digest};"
        f" recorded {info.expected_size} bytes, {info.sha256}):"
        f" {consequence}",
        hint=_CHANGED_HINT,
    )


def _restore_streamed(
    chunks: Iterator[bytes],
    info: BackupInfo,
    args: list[str],
    password: str | None,
    where: str,
    progress: bool,
    bound: RestoreBound,
) -> int:
    """One transaction, fed from S3; the last chunk goes in only once the whole object hashed right.

    Returns the bytes read.
    """
    restorer, stdin = _start_fed([*args, "--single-transaction"], password)
    bound.watch(restorer, "pg_restore was stopped and its single transaction rolled back: nothing was restored")
    digest = hashlib.sha256()
    seen = 0
    held: bytes | None = None
    failed = False  # pg_restore stopped reading: go on hashing, to tell damage (1) from its own failure (3)
    try:
        with transfer_progress(f"s3 -> pg_restore ({where})", progress) as advance:
            for chunk in chunks:
                digest.update(chunk)
                seen += len(chunk)
                advance(len(chunk))
                if held is not None and not failed:
                    failed = not _feed(stdin, held, bound)
                held = chunk
        bound.mark("last byte read")
        if not _intact(info, seen, digest):
            raise _mismatch(info, seen, digest.hexdigest())
        if held is not None and not failed:
            failed = not _feed(stdin, held, bound)
        stdin.close()
        problem = restorer.failure(where)
    except BaseException:
        restorer.kill()  # its transaction was never committed: the target is untouched
        raise
    finally:
        stdin.close()
        bound.unwatch(restorer)
    if problem:
        bound.check()  # stopped by the stall bound: that is the failure to report (exit 0 is a commit, whatever)
        raise ToolError(
            problem,
            hint="the object's checksum matched; pg_restore ran in a single transaction, so nothing was restored:"
            " fix the cause and retry",
        )
    return seen


def _restore_streamed_verify_after(
    chunks: Iterator[bytes],
    info: BackupInfo,
    args: list[str],
    password: str | None,
    where: str,
    progress: bool,
    bound: RestoreBound,
) -> int:
    """Fed from S3 into one pg_restore that commits as it goes; the checksum is checked afterwards.

    The digest covers exactly the bytes written to pg_restore's stdin and, once pg_restore
    stopped reading (it had every entry asked for, or failed), the rest of the object to its
    end: no byte of the object goes unhashed. A size or SHA-256 mismatch wins over pg_restore's
    own failure (damage may be its cause). ``chunks``: the object from its first byte (the TOC
    was read from the same download). Returns the bytes read.
    """
    restorer, stdin = _start_fed(args, password)
    bound.watch(restorer, f"pg_restore was stopped; {_DROP_TARGET}")
    digest = hashlib.sha256()
    seen = 0
    reading = True  # pg_restore still reads its stdin
    try:
        with transfer_progress(f"s3 -> pg_restore ({where})", progress) as advance:
            for chunk in chunks:
                digest.update(chunk)
                seen += len(chunk)
                advance(len(chunk))
                if reading:
                    reading = _feed(stdin, chunk, bound)
        stdin.close()
        problem = restorer.failure(where)
    except BaseException:
        restorer.kill()
        raise
    finally:
        stdin.close()
        bound.unwatch(restorer, _DROP_TARGET)
    if problem:
        bound.check()
    if not _intact(info, seen, digest):
        raise _mismatch(info, seen, digest.hexdigest(), _DROP_TARGET)
    if problem:
        raise ToolError(
            problem,
            hint="the object's checksum matched; pg_restore committed as it went, so the target may hold part of"
            " the backup: drop it, fix the cause and retry",
        )
    return seen


def _download_verified(
    chunks: Iterator[bytes], info: BackupInfo, progress: bool, workdir: Path, bound: RestoreBound
) -> tuple[Path, int, float]:
    """Write ``chunks`` (the object) to a private file, hashing exactly the bytes written; refuse it
    unless it matches. Returns the file, its size and the seconds it took."""
    expected = info.expected_size
    free = shutil.disk_usage(workdir).free
    if free < expected + _SPOOL_MARGIN:
        raise ToolError(
            f"restoring {info.uri} ({expected} bytes) needs a local copy, but {workdir.parent} has only"
            f" {free} bytes free",
            hint="point backup.spool_dir (or TMPDIR) at a disk with room for the archive; nothing was restored",
        )
    started = time.monotonic()
    spool = workdir / "backup.dump"
    digest = hashlib.sha256()
    seen = 0
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=0) as out:
        with transfer_progress(f"s3 -> {spool}", progress) as advance:
            for chunk in chunks:
                write_all(out, chunk)
                digest.update(chunk)
                seen += len(chunk)
                advance(len(chunk))
    if not _intact(info, seen, digest):
        raise _mismatch(info, seen, digest.hexdigest())
    bound.mark("local copy verified")
    return spool, seen, time.monotonic() - started


def _restore_file(
    args: list[str], spool: Path, password: str | None, where: str, jobs: int, bound: RestoreBound
) -> None:
    """``pg_restore [-j N]`` from the verified local copy (not one transaction: it did not fit, or -j)."""
    restorer = ChildProcess([*args, f"--jobs={jobs}", str(spool)], env=child_env(password))
    bound.watch(
        restorer,
        "pg_restore was stopped; this restore was not one transaction, so the target may hold part of the backup:"
        " drop and recreate it (or restore with --clean --confirm-clean)",
    )
    try:
        problem = restorer.failure(where)
    except BaseException:
        kill_tree(restorer)
        raise
    finally:
        bound.unwatch(restorer)
    if problem:
        bound.check()
        raise ToolError(
            problem,
            hint="the object's checksum matched, but this restore was not one transaction: the target may hold part"
            " of the backup; drop and recreate it (or restore with --clean --confirm-clean) after fixing the cause",
        )


def _start_fed(args: list[str], password: str | None) -> tuple[ChildProcess, SocketStdin]:
    """pg_restore reading its stdin from a socket we write into (:class:`SocketStdin`: not a pipe)."""
    stdin = SocketStdin()
    try:
        restorer = ChildProcess(args, env=child_env(password), stdin=stdin)
    except BaseException:
        stdin.close()
        raise
    return restorer, stdin


def _feed(stdin: SocketStdin, chunk: bytes, bound: RestoreBound) -> bool:
    """Write all of ``chunk`` into pg_restore; ``False`` if it stopped reading (it failed, or never needed more)."""
    try:
        stdin.write_all(chunk)
    except ConnectionError:  # BrokenPipeError, ConnectionResetError: pg_restore is gone
        return False
    bound.beat()
    return True


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def restore_command(config: Config, env: str, uri: str) -> str:
    """The exact shell command a human runs to restore ``uri`` (for the deploy runbook)."""
    parts = ["safemig", "restore"]
    if config.path is not None:
        parts += ["--config", str(config.path)]
    parts += ["--env", env, "--from", uri, "--target-database-url", "$TARGET_DATABASE_URL"]
    return " ".join(shlex.quote(p) if not p.startswith("$") else f'"{p}"' for p in parts)
