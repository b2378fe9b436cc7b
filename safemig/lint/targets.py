"""Which files to lint and what each one is: a migration (with its version and rollback script) or a rollback script.

Pure file-system work on top of :mod:`safemig.migrations.files` (sqlx's naming rules),
plus the layouts sqlx does not know: Diesel-style ``<version>_<name>/up.sql`` with
``down.sql`` beside it, and ``rollbacks/`` folders inside the migrations directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safemig.config import Config
from safemig.errors import MigrationFileError, UsageError
from safemig.migrations.files import parse_name, pick_rollback_script, rollback_scripts

MIGRATION = "migration"
ROLLBACK = "rollback"
# Diesel names its directories ``2024-01-01-000000_create_users`` (``diesel migration generate``) or
# ``20240101000000_create_users``; the version is the digits (sqlx-style ``005_x`` works too).
_DIESEL_DIR = re.compile(r"^(?P<version>\d{4}-\d{2}-\d{2}-\d{6}|\d+)_(?P<description>.+)$")
_DIESEL_METADATA = "metadata.toml"


@dataclass(frozen=True)
class Target:
    """A file to lint and what it is: a migration (with its version) or a rollback script."""

    path: Path
    role: str
    version: int | None
    description: str
    rollback: Path | None
    name_problem: str | None = None  # why the file name is not a valid migration name
    no_transaction: bool = False  # Diesel's metadata.toml says run_in_transaction = false


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as editors and CI expect)."""
    cwd = _cwd()
    text = path.as_posix()
    if text.startswith(cwd):
        return text[len(cwd) :]
    return text


@lru_cache(maxsize=1)
def _cwd() -> str:
    """The working directory with a trailing ``/``, looked up once per run (it is asked once per file)."""
    return Path.cwd().as_posix().rstrip("/") + "/"


def expand(paths: list[Path]) -> list[Path]:
    """Files as given, and every ``*.sql`` below each directory (recursively), without duplicates.

    A directory is resolved once and walked with ``os.scandir`` in sorted order (the order
    ``sorted(rglob())`` gives): resolving and stat-ing each of thousands of files was most
    of a large run's set-up time.
    """
    out: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for found in _sql_files_below(path.resolve()):
                out[Path(found)] = None
        elif path.is_file():
            out[path.resolve()] = None
        else:
            raise UsageError(f"{path}: no such file or directory", hint="pass SQL files or directories of migrations")
    return list(out)


def _sql_files_below(directory: Path) -> list[str]:
    found: list[str] = []
    pending = [str(directory)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir() and not entry.is_symlink():  # as rglob: no symlink loops
                    pending.append(entry.path)
                elif entry.name.endswith(".sql") and entry.is_file():
                    # a symlink counts as its target, so a file reached twice is linted once, as itself
                    found.append(os.path.realpath(entry.path) if entry.is_symlink() else entry.path)
            except OSError:
                continue
    return sorted(found, key=lambda p: p.split(os.sep))  # the order sorted(rglob()) gives


def _is_rollback(path: Path, config: Config) -> bool:
    if path.name == "down.sql" or path.name.endswith(".down.sql"):
        return True
    parents = path.parts[:-1]
    if "rollbacks" in parents:
        return True
    rollbacks = config.rollbacks_dir.parts
    return parents[: len(rollbacks)] == rollbacks


# ``{version: rollback scripts}`` per rollbacks directory, listed once per run: looking a version
# up by listing the directory for every migration was quadratic (4,000 migrations with their
# rollbacks: 16 million names).
rollback_index = lru_cache(maxsize=256)(rollback_scripts)


def _rollback_for(version: int, directory: Path) -> Path | None:
    """The rollback script of ``version`` in ``directory``; raises when there are several."""
    return pick_rollback_script(version, directory, rollback_index(directory))


def clear_run_caches() -> None:
    """Forget the directory listings of the previous run (a long-lived caller lints again)."""
    import sys

    for cached in (sql_names_in, sql_names_digest, rollback_index, migration_files, resolved_dir, _cwd):
        cached.cache_clear()
    history = sys.modules.get("safemig.lint.history")  # imported only by a run that needed it
    if history is not None:
        history.clear()


def classify_target(path: Path, config: Config) -> Target:
    """Decide whether ``path`` is a migration or a rollback script, and find its version and rollback."""
    if _is_rollback(path, config):
        return Target(path, ROLLBACK, None, "", None)
    name = path.name
    if name == "up.sql":  # Diesel layout: <version>_<name>/up.sql with down.sql beside it
        match = _DIESEL_DIR.match(path.parent.name)
        down = path.with_name("down.sql")
        if not match:
            return Target(
                path,
                MIGRATION,
                None,
                "",
                down if down.is_file() else None,
                f"directory {path.parent.name!r} has no <VERSION>_<name> form",
            )
        return Target(
            path,
            MIGRATION,
            int(match["version"].replace("-", "")),
            match["description"].replace("_", " "),
            down if down.is_file() else None,
            no_transaction=diesel_no_transaction(path.with_name(_DIESEL_METADATA)),
        )
    try:
        parsed = parse_name(name)
    except MigrationFileError as exc:
        return Target(path, MIGRATION, None, "", None, exc.message)
    if parsed is None:  # named explicitly (notes.txt, synapse's *.sql.postgres): linted all the same
        return Target(
            path, MIGRATION, None, "", None, f"{name} is not a migration file name (<VERSION>_<description>.sql)"
        )
    version, description, kind = parsed
    rollback = None
    if kind == "up":
        down = path.with_name(name[: -len(".up.sql")] + ".down.sql")
        rollback = down if down.is_file() else None
    if rollback is None:
        for directory in (config.rollbacks_dir, path.parent / "rollbacks"):
            try:
                rollback = _rollback_for(version, directory)
            except MigrationFileError:
                rollback = None
            if rollback is not None:
                break
    return Target(path, MIGRATION, version, description, rollback)


def diesel_no_transaction(metadata: Path) -> bool:
    """True when Diesel's ``metadata.toml`` beside ``up.sql`` says ``run_in_transaction = false``.

    An unreadable or malformed file counts as absent (Diesel itself would refuse it; the
    migration is then judged as running in a transaction, the stricter reading).
    """
    try:
        raw = metadata.read_bytes()
    except OSError:
        return False
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8")).get("run_in_transaction") is False
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def migration_version(path: Path) -> int | None:
    """The version of a migration file (sqlx's ``<VERSION>_x.sql`` or Diesel's ``<version>_x/up.sql``), else None."""
    if path.name == "up.sql":
        match = _DIESEL_DIR.match(path.parent.name)
        return int(match["version"].replace("-", "")) if match else None
    if path.name.endswith(".down.sql"):
        return None
    try:
        parsed = parse_name(path.name)
    except MigrationFileError:
        return None
    return parsed[0] if parsed is not None else None


@lru_cache(maxsize=256)
def resolved_dir(directory: str) -> str:
    """``os.path.realpath(directory)``, once per run."""
    return os.path.realpath(directory)


def history_root(migration: Path) -> Path:
    """The directory whose migrations come before ``migration``: its own, or for Diesel's
    ``<version>_<name>/up.sql`` the one holding those directories."""
    return migration.parent.parent if migration.name == "up.sql" else migration.parent


@lru_cache(maxsize=256)
def migration_files(directory: Path) -> tuple[tuple[int, str], ...]:
    """``(version, path)`` of the migrations in ``directory`` (``*.sql`` and Diesel's ``*/up.sql``), in
    version order, listed once per run: :mod:`safemig.lint.history` reads the earlier ones, the lint
    cache hashes them. Paths as strings: this runs for every directory of a warm-cache run."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return ()
    for entry in entries:
        name = entry.name
        try:
            if name.endswith(".sql"):
                parsed = None if name.endswith(".down.sql") else parse_name(name)
                if parsed is not None and entry.is_file():
                    out.append((parsed[0], entry.path))
            elif (match := _DIESEL_DIR.match(name)) and entry.is_dir():
                up = os.path.join(entry.path, "up.sql")
                if os.path.isfile(up):
                    out.append((int(match["version"].replace("-", "")), up))
        except (MigrationFileError, OSError):  # not a migration's name (file-naming reports it), or gone
            continue
    return tuple(sorted(out))


@lru_cache(maxsize=256)
def sql_names_in(directory: Path) -> tuple[str, ...]:
    """The ``.sql`` file names of a directory, listed once per run (file-naming compares them)."""
    try:
        return tuple(sorted(p.name for p in directory.iterdir() if p.name.endswith(".sql")))
    except OSError:
        return ()


@lru_cache(maxsize=256)
def sql_names_digest(directory: Path) -> str:
    """A hash of :func:`sql_names_in`, so a cache key covers the directory without rehashing it per file."""
    import hashlib

    return hashlib.sha256("\0".join(sql_names_in(directory)).encode()).hexdigest()


def rollback_ambiguity(version: int, config: Config, directory: Path) -> str | None:
    """The error for a version with several rollback scripts, if any."""
    for folder in (config.rollbacks_dir, directory / "rollbacks"):
        try:
            _rollback_for(version, folder)
        except MigrationFileError as exc:
            return exc.message
    return None
