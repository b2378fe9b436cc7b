"""Find migration files on disk exactly as sqlx-cli does, and refuse where sqlx misbehaves.

sqlx's resolver (``sqlx-core/src/migrate/source.rs``, ``resolve_blocking_with_config``)
reads the files directly in the source directory, splits each name at the first ``_``,
ignores names that do not end in ``.sql`` after it, parses the prefix as a Rust ``i64``
(an optional sign, then ASCII digits) and derives the description by stripping
``.up.sql`` / ``.down.sql`` / ``.sql`` and replacing ``_`` with a space. The checksum is
SHA-384 of the file's text, leaving out ``sqlx.toml``'s ``ignored-chars`` if any, and a
file whose text starts with ``-- no-transaction`` runs outside a transaction.

Names: safemig follows sqlx, and warns (``Discovery.warnings``) where following it
would hide a real mistake: a ``.sql`` file with no ``_`` (sqlx skips it: a migration that
never runs), a ``.down.sql`` with no up migration (ignored), a version written with a
sign (``+5``, ``-5``: sqlx reads them as numbers). A simple ``.sql`` plus a ``.down.sql``
of the same version is a reversible pair, as sqlx treats it. Unicode digits are refused,
as sqlx refuses them.

Where sqlx silently does something surprising, safemig stops with exit 2 instead:
duplicate versions (sqlx fails half-way on the ledger's primary key), a ``.sql`` file
whose prefix is not an integer, a file that is not UTF-8 (named with the byte offset).

This module is pure (no database, no heavy imports): ``safemig lint`` uses it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from safemig.errors import MigrationFileError

NO_TRANSACTION_MARKER = "-- no-transaction"
_SUFFIXES = ((".up.sql", "up"), (".down.sql", "down"), (".sql", "simple"))
ROLLBACK_NAME = re.compile(r"^(?P<version>\d+)_.*\.sql$")
_VERSION = re.compile(r"^[+-]?[0-9]+$")  # Rust's i64::from_str: ASCII digits only, one optional sign


@dataclass(frozen=True)
class Migration:
    """One migration as sqlx sees it: the simple file, or the ``.up.sql`` of a reversible pair."""

    version: int
    description: str
    path: Path
    sql: str
    checksum: bytes
    no_transaction: bool
    down_path: Path | None = None

    @property
    def reversible(self) -> bool:
        return self.down_path is not None

    @property
    def name(self) -> str:
        return self.path.name


def read_sql(path: Path) -> tuple[bytes, str]:
    """Return the raw bytes and the decoded text of a SQL file; non-UTF-8 names the byte offset."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MigrationFileError(f"{path}: cannot read: {exc.strerror}", hint="check the file's permissions") from None
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MigrationFileError(
            f"{path}:{line}: not valid UTF-8 at byte offset {exc.start} (byte 0x{raw[exc.start]:02x})",
            hint="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def checksum_of(raw: bytes, ignored_chars: frozenset[str] = frozenset()) -> bytes:
    """sqlx's checksum: SHA-384 of the file's bytes; with ``ignored-chars``, of its text without them.

    sqlx hashes the fragments between ignored characters (``checksum_fragments``), which
    is the hash of the UTF-8 text with those characters removed.
    """
    if not ignored_chars:
        return hashlib.sha384(raw).digest()
    text = raw.decode("utf-8")
    return hashlib.sha384(text.translate({ord(c): None for c in ignored_chars}).encode("utf-8")).digest()


def parse_name(file_name: str) -> tuple[int, str, str] | None:
    """``(version, description, kind)`` for a migration file name, ``None`` for names sqlx ignores.

    ``kind`` is ``simple``, ``up`` or ``down``. A ``.sql`` name whose prefix is not an
    integer raises :class:`MigrationFileError` (sqlx errors too, less clearly). A ``.sql``
    file with no ``_`` at all raises too: the linter reports it; :func:`discover` skips it
    with a warning, as sqlx skips it.
    """
    if not file_name.endswith(".sql"):
        return None
    prefix, sep, rest = file_name.partition("_")
    if not sep or not rest.endswith(".sql"):
        raise MigrationFileError(
            f"{file_name}: migration file name has no <VERSION>_ prefix",
            hint="name it like 005_add_user_preferences_table.sql (or move it out of the migrations directory)",
        )
    if not _VERSION.match(prefix):
        raise MigrationFileError(
            f"{file_name}: version prefix {prefix!r} is not an integer",
            hint="name it like 005_add_user_preferences_table.sql",
        )
    version = int(prefix, 10)
    if not -(2**63) <= version <= 2**63 - 1:
        raise MigrationFileError(
            f"{file_name}: version {prefix} does not fit in a BIGINT", hint="use a smaller version number"
        )
    for suffix, kind in _SUFFIXES:
        if rest.endswith(suffix):
            while rest.endswith(suffix):  # sqlx's trim_end_matches strips every repetition: 1_x.sql.sql is "x"
                rest = rest[: -len(suffix)]
            return version, rest.replace("_", " "), kind
    raise AssertionError("unreachable: rest ends with .sql")  # pragma: no cover


@dataclass(frozen=True)
class Discovery:
    """The migrations of a directory and what safemig noticed about names sqlx accepts."""

    migrations: list[Migration]
    warnings: list[str]


def discover(migrations_dir: Path, *, ignored_chars: frozenset[str] = frozenset()) -> list[Migration]:
    """Every migration in ``migrations_dir``, sorted by version; refuse ambiguous layouts."""
    return scan(migrations_dir, ignored_chars=ignored_chars).migrations


def scan(migrations_dir: Path, *, ignored_chars: frozenset[str] = frozenset()) -> Discovery:
    """:func:`discover`, with the warnings about names (see the module docstring)."""
    if not migrations_dir.is_dir():
        raise MigrationFileError(
            f"migrations directory {display_path(migrations_dir)} does not exist",
            hint="set migrations_dir in safemig.toml (or migrations-dir in sqlx.toml) or pass --source DIR",
        )
    ups: dict[int, Path] = {}
    downs: dict[int, Path] = {}
    descriptions: dict[int, str] = {}
    warnings: list[str] = []
    for path in sorted(migrations_dir.iterdir()):
        if not path.is_file() or not path.name.endswith(".sql"):
            continue
        prefix, sep, rest = path.name.partition("_")
        if not sep or not rest.endswith(".sql"):
            warnings.append(
                f"{display_path(path)}: ignored, as sqlx ignores it: the name has no <VERSION>_ prefix "
                "(rename it like 005_add_user_preferences_table.sql if it is a migration)"
            )
            continue
        version, description, kind = parse_name(path.name)  # type: ignore[misc]  # a .sql name: never None
        if prefix[0] in "+-":
            warnings.append(
                f"{display_path(path)}: version written with a sign; sqlx (and safemig) read it as {version}"
            )
        target = downs if kind == "down" else ups
        if version in target:
            raise MigrationFileError(
                f"{path}: duplicate migration version {version} (also {target[version].name})",
                hint="give one of them the next free version number; versions must be unique",
            )
        target[version] = path
        if kind != "down":
            descriptions[version] = description
    for version, down in sorted(downs.items()):
        if version not in ups:
            warnings.append(
                f"{display_path(down)}: ignored: a down migration for version {version} with no "
                f"{down.name.replace('.down.sql', '.up.sql')} (sqlx never runs it either)"
            )
    migrations = []
    for version in sorted(ups):
        path = ups[version]
        raw, sql = read_sql(path)
        migrations.append(
            Migration(
                version=version,
                description=descriptions[version],
                path=path,
                sql=sql,
                checksum=checksum_of(raw, ignored_chars),
                no_transaction=sql.startswith(NO_TRANSACTION_MARKER),
                down_path=downs.get(version),
            )
        )
    return Discovery(migrations, warnings)


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it: shorter messages."""
    try:
        path = Path(path)
        if path.is_absolute() and path.resolve().is_relative_to(Path.cwd()):
            return os.path.relpath(path)
    except (OSError, ValueError):  # pragma: no cover - the cwd vanished
        pass
    return str(path)


def find_rollback(migration: Migration, rollbacks_dir: Path) -> Path | None:
    """The script that undoes ``migration``: its ``.down.sql``, else ``rollbacks/<VERSION>_*.sql``.

    Versions compare as integers, so ``rollbacks/4_x.sql`` and ``rollbacks/004_x.sql`` both
    belong to version 4. More than one rollback for a version is refused as ambiguous.
    """
    if migration.down_path is not None:
        return migration.down_path
    return find_rollback_script(migration.version, rollbacks_dir)


def find_rollback_script(version: int, rollbacks_dir: Path) -> Path | None:
    """``rollbacks/<VERSION>_*.sql`` for ``version`` (integer comparison), or ``None``."""
    return pick_rollback_script(version, rollbacks_dir, rollback_scripts(rollbacks_dir))


def rollback_scripts(rollbacks_dir: Path) -> dict[int, tuple[Path, ...]]:
    """``{version: its rollback scripts}`` of a rollbacks directory, in name order (empty if there is none).

    Listed once and looked up per version: the linter keeps one listing per run for all
    of a directory's migrations.
    """
    index: dict[int, list[Path]] = {}
    try:
        entries = sorted(os.scandir(rollbacks_dir), key=lambda e: e.name)
    except OSError:
        return {}
    for entry in entries:
        match = ROLLBACK_NAME.match(entry.name)
        if match and entry.is_file():
            index.setdefault(int(match["version"]), []).append(Path(entry.path))
    return {version: tuple(paths) for version, paths in index.items()}


def pick_rollback_script(version: int, rollbacks_dir: Path, scripts: dict[int, tuple[Path, ...]]) -> Path | None:
    """The one rollback script of ``version`` among ``scripts``; several is an error naming them."""
    found = scripts.get(version, ())
    if len(found) > 1:
        raise MigrationFileError(
            f"{rollbacks_dir}: {len(found)} rollback scripts for version {version}: {', '.join(p.name for p in found)}",
            hint="keep one rollback script per migration version",
        )
    return found[0] if found else None
