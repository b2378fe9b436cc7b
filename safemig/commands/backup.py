"""`safemig backup`, `safemig backups`, `safemig restore`: thin CLI over :mod:`safemig.backup`.

Only option parsing and rendering live here; boto3 and psycopg are loaded by the library
when a command runs, never when ``safemig lint`` starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from safemig.commands.common import ConfigOption, DatabaseUrlOption, JsonOption, QuietOption, load

if TYPE_CHECKING:  # pragma: no cover
    from safemig.config import Config

RequiredEnvOption = Annotated[
    str, typer.Option("--env", "-e", help="Environment name from [envs.NAME] in the config.", show_default=False)
]


def register(app: typer.Typer) -> None:
    """Add ``backup``, ``backups`` and ``restore`` to the root app."""
    app.command(
        "backup", help="Dump the env's database (pg_dump -Fc) straight into S3, then verify the stored object."
    )(backup_command)
    group = typer.Typer(
        help="List the env's backups in S3 (newest first), prune them, verify one.",
        invoke_without_command=True,
        no_args_is_help=False,
    )
    group.callback(invoke_without_command=True)(backups_command)
    group.command("prune", help="Remove backups outside the retention policy (never the newest verified one).")(
        prune_command
    )
    group.command("verify", help="Prove a stored backup whole: checksum, a full archive read, optionally a restore.")(
        verify_command
    )
    app.add_typer(group, name="backups")
    app.command("restore", help="Restore a verified backup from S3 with pg_restore, checking its SHA-256 on the way.")(
        restore_command
    )


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _show_progress() -> bool:
    """A progress bar only for a person at a terminal: not in CI, not when piped."""
    from safemig import output

    return sys.stderr.isatty() and not os.environ.get("CI") and not output.is_quiet()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (CI cancelling the job, ``kill``) and SIGHUP (the ssh session dropping) into
    KeyboardInterrupt, so uploads are aborted."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signums = [signal.SIGTERM]
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup: keep going
        signums.append(signal.SIGHUP)
    try:
        previous = {signum: signal.signal(signum, handler) for signum in signums}
    except ValueError:  # not the main thread (tests running the CLI in a thread)
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def backup_command(
    env: RequiredEnvOption,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Free text stored with the backup (e.g. the release).", show_default=False),
    ] = None,
    database_url: DatabaseUrlOption = None,
    config_path: ConfigOption = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Back up ENV's database to S3 (see README, section backup)."""
    from safemig import output
    from safemig.backup import run_backup
    from safemig.config import resolve_database_url

    config = load(config_path)
    url = database_url or resolve_database_url(config, env=env)
    with _sigterm_as_interrupt():
        result = run_backup(config, env, database_url=url, label=label, progress=_show_progress() and not json_out)
    if json_out:
        output.print_json(result.as_dict())
        return
    output.success(f"backup stored and verified: {result.uri}")
    output.echo(f"  size     {human_size(result.size)} ({result.size} bytes) in {result.parts} parts")
    output.echo(
        f"  speed    {human_size(result.throughput_bps)}/s"
        f" (dump+upload {result.dump_s:.1f}s, verify {result.verify_s:.1f}s)"
    )
    output.echo(f"  sha256   {result.sha256}")
    output.echo(f"  verified {result.verified_by}")
    version = result.newest_version if result.newest_version is not None else "none applied"
    output.echo(
        f"  database {result.metadata.get('database')} (PostgreSQL {result.metadata.get('server-version')}),"
        f" newest migration {version}"
    )


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def backups_command(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Environment name from [envs.NAME] in the config.", show_default=False),
    ] = None,
    config_path: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """List ENV's backups, newest first: time, size, newest migration version, status, key; and open uploads."""
    from safemig import output
    from safemig.backup import list_backups, list_open_uploads
    from safemig.errors import UsageError

    if ctx.invoked_subcommand is not None:
        return
    if env is None:
        raise UsageError("safemig backups needs --env NAME", hint="e.g. safemig backups --env prod")

    config = load(config_path)
    infos = list_backups(config, env)
    uploads = list_open_uploads(config, env)
    if json_out:
        output.print_json(
            {
                "backups": [
                    {
                        "uri": i.uri,
                        "key": i.key,
                        "created": i.created.isoformat(),
                        "size": i.size,
                        "recorded_size": i.recorded_size,
                        "newest_version": i.newest_version,
                        "sha256": i.sha256,
                        "verified": i.verified,
                        "status": i.status,
                        "problem": i.problem,
                        "label": i.label,
                        "roles": bool(i.globals),
                    }
                    for i in infos
                ],
                "open_uploads": [
                    {
                        "key": u.key,
                        "upload_id": u.upload_id,
                        "initiated": u.initiated.isoformat(),
                        "age_s": round(u.age_s()),
                    }
                    for u in uploads
                ],
            }
        )
        return
    if not infos:
        output.echo(f"no backups of env {env} yet (run `safemig backup --env {env}`)")
    else:
        output.echo(f"{'time (UTC)':<20}  {'size':>10}  {'version':>14}  {'status':<12}  key")
        for i in infos:
            note = {
                "unverified": "  (UNVERIFIED: no recorded checksum, an interrupted backup: never restored)",
                "inconsistent": f"  (INCONSISTENT: {i.problem}: never restored)",
            }.get(i.status, "")
            label = f"  [{i.label}]" if i.label else ""
            output.echo(
                f"{i.created.strftime('%Y-%m-%d %H:%M:%S'):<20}  {human_size(i.size):>10}"
                f"  {str(i.newest_version or '-'):>14}  {i.status:<12}  {i.key}{label}{note}"
            )
    for u in uploads:
        output.echo(
            f"open upload {u.key} (id {u.upload_id[:16]}...), started {_age(u.age_s())} ago: never completed; its parts"
            " are billed until aborted (`safemig backups prune` aborts those older than a day)"
        )


def _into_own_database(config: Config, env: str, target_database_url: str | None) -> bool:
    """Is the restore's target the env's own database (no ``--target-database-url``, or one naming it)?"""
    if target_database_url is None:
        return True
    from safemig.config import resolve_database_url
    from safemig.errors import ConfigError
    from safemig.protect import same_database

    try:
        own = resolve_database_url(config, env=env)
    except ConfigError:  # the env's URL is not set here (e.g. its variable): the target cannot be it by name
        return False
    return same_database(target_database_url, own)


def restore_command(
    env: RequiredEnvOption,
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="s3://BUCKET/KEY of the backup, or `latest` (the env's newest verified backup).",
            show_default=False,
        ),
    ],
    target_database_url: Annotated[
        str | None,
        typer.Option(
            "--target-database-url",
            help="Database to restore into (default: the env's database_url)."
            " It must exist and be empty unless --clean.",
            show_default=False,
        ),
    ] = None,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean", help="Drop the objects the backup contains before recreating them (needs --confirm-clean)."
        ),
    ] = False,
    confirm_clean: Annotated[
        bool, typer.Option("--confirm-clean", help="Confirm --clean: existing data in the target is replaced.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="pg_restore parallel jobs; above 1 the object is first downloaded and verified (disk: its size),"
            " unless the archive has no work to run side by side (then it streams).",
        ),
    ] = 1,
    no_owner: Annotated[
        bool, typer.Option("--no-owner", help="Do not set owners (a target without the backup's roles).")
    ] = False,
    no_privileges: Annotated[
        bool, typer.Option("--no-privileges", help="Do not restore GRANTs (a target without the backup's roles).")
    ] = False,
    create_roles: Annotated[
        bool,
        typer.Option(
            "--create-roles", help="First create the backup's roles the target's server lacks (stored beside the dump)."
        ),
    ] = False,
    no_tablespaces: Annotated[
        bool,
        typer.Option(
            "--no-tablespaces", help="Put everything in the target's default tablespace (pg_restore --no-tablespaces)."
        ),
    ] = False,
    create_tablespaces: Annotated[
        bool,
        typer.Option(
            "--create-tablespaces",
            help="First create the tablespaces the backup's objects use and the target's server lacks (superuser;"
            " their directories must exist there).",
        ),
    ] = False,
    tablespace_location: Annotated[
        list[str] | None,
        typer.Option(
            "--tablespace-location",
            metavar="NAME=DIR",
            help="With --create-tablespaces: create tablespace NAME in DIR instead of its directory on the source.",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Into a protected env's own database: do not ask.")] = False,
    outside_window: Annotated[
        bool, typer.Option("--outside-window", help="Into a protected env's own database outside its window.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the window is overridden.")] = None,
    config_path: ConfigOption = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Restore a backup into the target database, verifying its checksum while streaming."""
    from safemig import output
    from safemig.backup import restore_backup
    from safemig.config import resolve_database_url
    from safemig.errors import UsageError

    if clean and not confirm_clean:
        raise UsageError(
            "--clean replaces data in the target database and needs --confirm-clean as well",
            hint="add --confirm-clean if that is what you want",
        )
    if no_tablespaces and create_tablespaces:
        raise UsageError("--no-tablespaces and --create-tablespaces contradict each other", hint="pass one of them")
    locations: dict[str, str] = {}
    for given in tablespace_location or []:
        name, sep, directory = given.partition("=")
        if not sep or not name or not directory:
            raise UsageError(
                f"--tablespace-location {given}: expected NAME=DIR", hint="e.g. --tablespace-location fast=/srv/pg/fast"
            )
        locations[name] = directory
    policy = "none" if no_tablespaces else "create" if create_tablespaces else "keep"
    from safemig.backup.tablespaces import check_options

    check_options(policy, locations)
    from safemig.protect import Override, guard_env, is_protected

    override = Override(outside_window, reason)
    override.check()
    config = load(config_path)
    target = target_database_url or resolve_database_url(config, env=env)
    # Only a protected env asks (safemig.protect), so only then is it worth comparing the target
    # with the env's own database: that comparison reads URLs with libpq, whose import (psycopg,
    # ~0.07 s) would otherwise come before the restore's first request to S3 (restore_backup
    # imports it in a thread while that request is under way).
    if is_protected(config.env(env)) and _into_own_database(config, env, target_database_url):
        guard_env(config, env, "restore a backup into", yes=yes, override=override, warn=output.warn)
    with _sigterm_as_interrupt():
        result = restore_backup(
            config,
            env,
            source=source,
            target_url=target,
            clean=clean,
            progress=_show_progress() and not json_out,
            jobs=jobs,
            no_owner=no_owner,
            no_privileges=no_privileges,
            create_roles=create_roles,
            tablespaces=policy,
            tablespace_locations=locations,
        )
    if json_out:
        output.print_json(result.as_dict())
        return
    output.success(f"restored {result.uri} into {result.database} ({result.target})")
    how = {
        "stream": "streamed in one transaction"
        + (f"; --jobs {jobs} would run nothing side by side in this archive" if jobs > 1 else ""),
        "spool": f"verified local copy, pg_restore -j {result.jobs}",
    }.get(result.mode, result.mode)
    output.echo(f"  {human_size(result.size)} in {result.duration_s:.1f}s ({how}), sha256 {result.sha256} verified")
    if result.roles_created:
        output.echo(f"  roles created: {', '.join(result.roles_created)}")
    if result.tablespaces_created:
        output.echo(f"  tablespaces created: {', '.join(result.tablespaces_created)}")
    for note in result.notes:
        output.warn(note)


def prune_command(
    env: RequiredEnvOption,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last", help="Keep the newest N verified backups (default: backup.keep_last).", show_default=False
        ),
    ] = None,
    keep_days: Annotated[
        int | None,
        typer.Option(
            "--keep-days", help="Keep every backup younger than D days (default: backup.keep_days).", show_default=False
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    config_path: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Apply the retention policy to ENV's backups; the newest verified backup is never removed."""
    from safemig import output
    from safemig.backup.retention import prune

    result = prune(load(config_path), env, keep_last=keep_last, keep_days=keep_days, dry_run=dry_run)
    if json_out:
        output.print_json(result.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    for info, why in result.removed:
        output.echo(f"{verb} {info.uri} ({info.created:%Y-%m-%d %H:%M}, {human_size(info.size)}): {why}")
    for upload in result.aborted:
        verb_upload = "would abort" if dry_run else "aborted"
        output.echo(f"{verb_upload} the open upload of {upload.key}, started {_age(upload.age_s())} ago")
    for info, why in result.kept:
        output.echo(f"kept {info.uri}: {why}")
    output.success(
        f"{verb} {len(result.removed)} backups and {len(result.aborted)} open uploads; kept {len(result.kept)}"
    )


def verify_command(
    source: Annotated[str, typer.Argument(help="`latest` or s3://BUCKET/KEY.", show_default=False)],
    env: RequiredEnvOption,
    restore_into: Annotated[
        str | None,
        typer.Option(
            "--restore",
            help="Also restore into a scratch database created (and dropped) on this server URL.",
            show_default=False,
        ),
    ] = None,
    config_path: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Check a backup: recorded checksum, every block of the archive read, optionally a real restore."""
    from safemig import output
    from safemig.backup.audit import verify_backup

    with _sigterm_as_interrupt():
        result = verify_backup(load(config_path), env, source, scratch_url=restore_into)
    if json_out:
        output.print_json(result.as_dict())
        return
    output.success(f"{result.uri} verified: sha256 {result.sha256}, every block of the archive read")
    if result.restored_into:
        output.echo(f"  restored into the scratch database {result.restored_into} (dropped again)")
