"""Which files to lint and what each one is: a migration (with its version and rollback script) or a rollback script.

Pure file-system work on top of :mod:`safemig.migrations.files` (sqlx's naming rules),
plus the layouts sqlx does not know: Diesel-style ``<version>_<name>/up.sql`` with
``down.sql`` beside it, and ``rollbacks/`` folders inside the migrations directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safemig.config import Config
from safemig.errors import MigrationFileError, UsageError
from safemig.migrations.files import find_rollback_script, parse_name

MIGRATION = "migration"
ROLLBACK = "rollback"
_DIESEL_DIR = re.compile(r"^(?P<version>\d+)_(?P<description>.+)$")


@dataclass(frozen=True)
class Target:
    """A file to lint and what it is: a migration (with its version) or a rollback script."""

    path: Path
    role: str
    version: int | None
    description: str
    rollback: Path | None
    name_problem: str | None = None  # why the file name is not a valid migration name


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as editors and CI expect)."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def expand(paths: list[Path]) -> list[Path]:
    """Files as given, and every ``*.sql`` below each directory (recursively), without duplicates."""
    out: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*.sql")):
                if found.is_file():
                    out[found.resolve()] = None
        elif path.is_file():
            out[path.resolve()] = None
        else:
            raise UsageError(f"{path}: no such file or directory", hint="pass SQL files or directories of migrations")
    return list(out)


def _is_rollback(path: Path, config: Config) -> bool:
    if path.name == "down.sql" or path.name.endswith(".down.sql"):
        return True
    return config.rollbacks_dir in path.parents or any(p.name == "rollbacks" for p in path.parents)


def classify_target(path: Path, config: Config) -> Target:
    """Decide whether ``path`` is a migration or a rollback script, and find its version and rollback."""
    if _is_rollback(path, config):
        return Target(path, ROLLBACK, None, "", None)
    name = path.name
    if name == "up.sql":  # Diesel layout: <version>_<name>/up.sql with down.sql beside it
        match = _DIESEL_DIR.match(path.parent.name)
        down = path.with_name("down.sql")
        if not match:
            return Target(path, MIGRATION, None, "", down if down.is_file() else None,
                          f"directory {path.parent.name!r} has no <VERSION>_<name> form")
        return Target(path, MIGRATION, int(match["version"]), match["description"].replace("_", " "),
                      down if down.is_file() else None)
    try:
        parsed = parse_name(name)
    except MigrationFileError as exc:
        return Target(path, MIGRATION, None, "", None, exc.message)
    assert parsed is not None  # expand() only yields .sql files
    version, description, kind = parsed
    rollback = None
    if kind == "up":
        down = path.with_name(name[: -len(".up.sql")] + ".down.sql")
        rollback = down if down.is_file() else None
    if rollback is None:
        for directory in (config.rollbacks_dir, path.parent / "rollbacks"):
            try:
                rollback = find_rollback_script(version, directory)
            except MigrationFileError:
                rollback = None
            if rollback is not None:
                break
    return Target(path, MIGRATION, version, description, rollback)


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
            find_rollback_script(version, folder)
        except MigrationFileError as exc:
            return exc.message
    return None
