"""``restore_backup``: stream a verified backup from S3 into pg_restore, checking it on the way.

The SHA-256 is computed while streaming and the last chunk is held back until it matches
the checksum recorded at backup time: pg_restore runs in one transaction and cannot
finish (so cannot commit) without those last bytes, so a corrupt backup restores nothing.
A non-empty target is refused unless the caller asked to ``clean`` it (the CLI also wants
an explicit confirmation flag for that).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from safemig.backup.pgdump import ChildProcess, child_env, conninfo_without_password, pick_binary
from safemig.backup.progress import transfer_progress
from safemig.backup.settings import load_settings
from safemig.backup.store import BackupInfo, head_backup, list_env_backups, make_client, parse_uri
from safemig.backup.verify import iter_object
from safemig.config import Config
from safemig.errors import CheckFailed, DatabaseError, ToolError, UsageError

_USER_OBJECTS = """
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
      AND n.nspname NOT LIKE 'pg\\_temp%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')),
  (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')),
  current_database()
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "target": self.target,
            "database": self.database,
            "size": self.size,
            "sha256": self.sha256,
            "duration_s": round(self.duration_s, 3),
            "cleaned": self.cleaned,
        }


def resolve_source(client: Any, config: Config, env: str, source: str) -> BackupInfo:
    """``latest`` (the env's newest verified backup) or an ``s3://`` URI -> its description."""
    settings = load_settings(config)
    if source == "latest":
        for info in list_env_backups(client, settings, env):
            if info.verified:
                return info
        raise UsageError(
            f"no verified backup of env {env} under s3://{settings.bucket}/{settings.env_prefix(env)}",
            hint=f"run `safemig backup --env {env}` first, or pass --from s3://BUCKET/KEY",
        )
    bucket, key = parse_uri(source)
    return head_backup(client, bucket, key)


def _target_state(url: str) -> tuple[str, int]:
    """The target's database name and how many user tables/views/sequences/functions it holds."""
    import psycopg

    from safemig.db import connect, describe, error_text

    with connect(url, autocommit=True, application_name="safemig restore") as conn:
        try:
            relations, functions, name = conn.execute(_USER_OBJECTS).fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot inspect {describe(url)}: {error_text(exc)}") from None
    return name, int(relations) + int(functions)


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
    select: Callable[[list[str]], list[str]] | None = None,
) -> RestoreResult:
    """Restore ``source`` (``latest`` or ``s3://...``) into ``target_url``'s database.

    Refuses (exit 1) an object without a recorded checksum, a non-empty target without
    ``clean``, and any byte stream whose size or SHA-256 differs from the recorded ones.
    """
    from safemig.db import describe

    settings = load_settings(config)
    client = make_client(settings)
    info = resolve_source(client, config, env, source)
    if not info.verified:
        raise CheckFailed(
            f"{info.uri} has no recorded checksum: it is not a verified safemig backup",
            hint="an interrupted backup leaves such an object; pick another with `safemig backups --env ENV`",
        )
    database, objects = _target_state(target_url)
    if objects and not clean:
        raise CheckFailed(
            f"target database {database} at {describe(target_url)} is not empty ({objects} tables, views, sequences or functions)",
            hint="restore into a fresh database (createdb NAME), or pass --clean --confirm-clean to drop and replace what the backup contains",
        )
    recorded_size = info.metadata.get("size", str(info.size))
    if str(info.size) != recorded_size:
        raise CheckFailed(
            f"{info.uri} is {info.size} bytes in S3 but {recorded_size} bytes were recorded at backup time: nothing was restored",
            hint=_CHANGED_HINT,
        )
    dump_major = _major(info.metadata.get("pg-dump-version", ""))
    pg_restore = pick_binary(
        "pg_restore",
        dump_major,
        settings.pg_bin_dir,
        purpose=f"read a pg_dump {info.metadata.get('pg-dump-version')} archive",
    )
    conninfo, password = conninfo_without_password(target_url)
    args = [pg_restore.path, "--exit-on-error", "--single-transaction", "--no-password", f"--dbname={conninfo}"]
    if clean:
        args += ["--clean", "--if-exists"]
    if jobs != 1:
        raise UsageError("restoring with jobs > 1 is not supported yet", hint="restore with jobs=1")
    if no_owner:
        args.append("--no-owner")
    if no_privileges:
        args.append("--no-privileges")
    list_file = None
    if select is not None:  # pg_restore's own TOC (-l), filtered by the caller, passed back with -L
        toc = _toc_lines(pg_restore.path, client, info)
        list_file = tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8", delete=False)  # noqa: SIM115
        with list_file:
            list_file.write("".join(line + "\n" for line in select(toc)))
        args.append(f"--use-list={list_file.name}")
    started = time.monotonic()
    restorer = ChildProcess(args, env=child_env(password), stdin=-1)
    digest = hashlib.sha256()
    seen = 0
    held: bytes | None = None
    try:
        with transfer_progress(f"s3 -> pg_restore {database}", progress) as advance:
            for chunk in iter_object(client, info.bucket, info.key, "restoring"):
                digest.update(chunk)
                seen += len(chunk)
                advance(len(chunk))
                if seen > int(
                    recorded_size
                ):  # pg_restore may end (and commit) before the extra bytes: never feed it on
                    raise CheckFailed(
                        f"{info.uri} does not match its recorded checksum (more than the {recorded_size} bytes recorded): nothing was restored",
                        hint=_CHANGED_HINT,
                    )
                if held is not None:
                    _feed(restorer, held, database)
                held = chunk
        if str(seen) != recorded_size or digest.hexdigest() != info.sha256:
            raise CheckFailed(
                f"{info.uri} does not match its recorded checksum ({seen} bytes, SHA-256 {digest.hexdigest()};"
                f" recorded {recorded_size} bytes, {info.sha256}): nothing was restored",
                hint=_CHANGED_HINT,
            )
        if held is not None:
            _feed(restorer, held, database)
        restorer.stdin.close()
    except BaseException:
        restorer.kill()  # its transaction was never committed: the target is untouched
        raise
    finally:
        if list_file is not None:  # pg_restore reads it once it has the archive's TOC: wait for it to end
            restorer.wait()
            os.unlink(list_file.name)
    problem = restorer.failure(f"restoring into {database}")
    if problem:
        raise ToolError(
            problem, hint="pg_restore ran in a single transaction, so nothing was restored; fix the cause and retry"
        )
    return RestoreResult(
        uri=info.uri,
        target=describe(target_url),
        database=database,
        size=seen,
        sha256=info.sha256,
        duration_s=time.monotonic() - started,
        cleaned=clean,
    )


_CHANGED_HINT = "the object was changed or damaged in storage; restore another backup (`safemig backups --env ENV`)"


def _feed(restorer: ChildProcess, chunk: bytes, database: str) -> None:
    try:
        restorer.stdin.write(chunk)
    except BrokenPipeError:
        problem = restorer.failure(f"restoring into {database}") or "pg_restore stopped reading its input"
        raise ToolError(
            problem, hint="pg_restore ran in a single transaction, so nothing was restored; fix the cause and retry"
        ) from None


def _toc_lines(pg_restore: str, client: Any, info: BackupInfo) -> list[str]:
    """The archive's table of contents (``pg_restore -l``), read from the head of the object."""
    lister = ChildProcess([pg_restore, "--list"], env=child_env(None), stdin=-1, stdout=-1)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(lister.stdout.read()), daemon=True)
    reader.start()
    try:
        for chunk in iter_object(client, info.bucket, info.key, "reading the table of contents of"):
            try:
                lister.stdin.write(chunk)
            except BrokenPipeError:  # it has read the TOC and stopped: what it needs is the head
                break
        try:
            lister.stdin.close()
        except BrokenPipeError:
            pass
    except BaseException:
        lister.kill()
        raise
    reader.join()
    problem = lister.failure(f"listing {info.uri}")
    if problem:
        raise ToolError(problem, hint="the backup's archive cannot be read by pg_restore; nothing was restored")
    return b"".join(out).decode("utf-8", "replace").splitlines()


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
