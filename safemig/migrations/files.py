"""Find migration files on disk exactly as sqlx-cli does, and refuse where sqlx misbehaves.

sqlx's resolver (``sqlx-core/src/migrate/source.rs``) reads the files directly in the
source directory, splits each name at the first ``_``, ignores names that do not end in
``.sql`` after it, parses the prefix as an ``i64`` version and derives the description by
stripping ``.up.sql`` / ``.down.sql`` / ``.sql`` and replacing ``_`` with a space. The
checksum is SHA-384 of the file's raw bytes, and a file whose text starts with
``-- no-transaction`` runs outside a transaction.

Where sqlx silently does something surprising, safemig stops with exit 2 instead:
duplicate versions, a ``.sql`` file whose name has no integer version, a file that is
not UTF-8 (named with the byte offset).

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


def checksum_of(raw: bytes) -> bytes:
    """sqlx's checksum: SHA-384 of the file's bytes, no normalisation."""
    return hashlib.sha384(raw).digest()


def parse_name(file_name: str) -> tuple[int, str, str] | None:
    """``(version, description, kind)`` for a migration file name, ``None`` for names sqlx ignores.

    ``kind`` is ``simple``, ``up`` or ``down``. A ``.sql`` name whose prefix is not an
    integer raises :class:`MigrationFileError` (sqlx errors too, less clearly; a ``.sql``
    file with no ``_`` at all, which sqlx silently skips, is refused as well).
    """
    if not file_name.endswith(".sql"):
        return None
    prefix, sep, rest = file_name.partition("_")
    if not sep or not rest.endswith(".sql"):
        raise MigrationFileError(
            f"{file_name}: migration file name has no <VERSION>_ prefix",
            hint="name it like 005_add_user_preferences_table.sql (or move it out of the migrations directory)",
        )
    try:
        version = int(prefix, 10)
    except ValueError:
        version = None
    if version is None or not prefix.isdigit():
        raise MigrationFileError(
            f"{file_name}: version prefix {prefix!r} is not an integer",
            hint="name it like 005_add_user_preferences_table.sql",
        )
    if version > 2**63 - 1:
        raise MigrationFileError(
            f"{file_name}: version {prefix} does not fit in a BIGINT", hint="use a smaller version number"
        )
    for suffix, kind in _SUFFIXES:
        if rest.endswith(suffix):
            while rest.endswith(suffix):  # sqlx's trim_end_matches strips every repetition: 1_x.sql.sql is "x"
                rest = rest[: -len(suffix)]
            return version, rest.replace("_", " "), kind
    raise AssertionError("unreachable: rest ends with .sql")  # pragma: no cover


def discover(migrations_dir: Path) -> list[Migration]:
    """Every migration in ``migrations_dir``, sorted by version; refuse ambiguous layouts."""
    if not migrations_dir.is_dir():
        raise MigrationFileError(
            f"migrations directory {migrations_dir} does not exist",
            hint="set migrations_dir in safemig.toml or pass --source DIR",
        )
    ups: dict[int, Path] = {}
    downs: dict[int, Path] = {}
    descriptions: dict[int, str] = {}
    for path in sorted(migrations_dir.iterdir()):
        if not path.is_file():
            continue
        parsed = parse_name(path.name)
        if parsed is None:
            continue
        version, description, kind = parsed
        target = downs if kind == "down" else ups
        if version in target:
            raise MigrationFileError(
                f"{path}: duplicate migration version {version} (also {target[version].name})",
                hint="give one of them the next free version number; versions must be unique",
            )
        target[version] = path
        if kind != "down":
            descriptions[version] = description
    for version, down in downs.items():
        if version not in ups:
            raise MigrationFileError(
                f"{down}: down migration for version {version} has no matching .up.sql",
                hint=f"add {down.name.replace('.down.sql', '.up.sql')} or remove the file",
            )
        if not ups[version].name.endswith(".up.sql"):
            raise MigrationFileError(
                f"{down}: version {version} mixes a simple migration ({ups[version].name}) with a .down.sql",
                hint="rename the simple file to .up.sql, or move the down script to rollbacks/",
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
                checksum=checksum_of(raw),
                no_transaction=sql.startswith(NO_TRANSACTION_MARKER),
                down_path=downs.get(version),
            )
        )
    return migrations


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
