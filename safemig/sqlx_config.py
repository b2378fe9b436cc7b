"""sqlx 0.9's ``sqlx.toml``: the ``[migrate]`` settings (and ``common.database-url-var``).

A repository set up for sqlx keeps its migration settings there, and sqlx-cli reads
``sqlx.toml`` from the current directory (``sqlx-cli/src/opt.rs``, ``ConfigOpt::load_config``).
safemig reads the same file from its config root (the directory of ``safemig.toml``, else
the current directory) with sqlx's meaning for every key (``sqlx-core/src/config/migrate.rs``):

* ``migrations-dir`` - the migrations directory (``safemig.toml``'s ``migrations_dir`` and
  ``--source`` still win);
* ``table-name`` - the ledger table, optionally schema-qualified and quoted;
* ``ignored-chars`` - characters left out of the checksum (changes every checksum);
* ``create-schemas`` - schemas created before the ledger table (so it may live in one);
* ``[migrate.defaults]`` ``migration-type`` / ``migration-versioning`` - what ``migrate add``
  creates when no ``-r``/``-s``/``-t`` flag is given.

Unknown keys under ``[migrate]`` are refused, as sqlx refuses them (``deny_unknown_fields``);
the sections safemig has no use for (``[drivers]``, ``[macros]``) are not looked at.

Pure (no database, no heavy imports): ``safemig lint`` resolves the migrations directory
through it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from safemig.errors import ConfigError

SQLX_CONFIG_FILE_NAME = "sqlx.toml"
SQLX_MIGRATIONS_DIR = "migrations"  # sqlx's default (Config::migrations_dir)
GUIDE_MIGRATIONS_DIR = "docker/migrations"  # the guide's layout, safemig's default before sqlx.toml support
DEFAULT_TABLE = "_sqlx_migrations"
MIGRATION_TYPES = ("inferred", "simple", "reversible")
VERSIONINGS = ("inferred", "timestamp", "sequential")
_MIGRATE_KEYS = {"migrations-dir", "table-name", "ignored-chars", "create-schemas", "defaults"}
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'


@cache
def _table_name_pattern() -> re.Pattern[str]:
    """Compiled on first use: ``safemig lint`` imports this module on every commit and never needs it."""
    return re.compile(rf"^(?:(?P<schema>{_IDENT})\.)?(?P<name>{_IDENT})$")


@dataclass(frozen=True)
class TableName:
    """The ledger table: ``schema`` is ``None`` for sqlx's unqualified default (resolved per session)."""

    name: str = DEFAULT_TABLE
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class SqlxConfig:
    """What ``sqlx.toml`` says (sqlx's defaults when there is none)."""

    path: Path | None = None
    migrations_dir: str | None = None
    table: TableName = TableName()
    ignored_chars: frozenset[str] = frozenset()
    create_schemas: tuple[str, ...] = ()
    migration_type: str = "inferred"
    migration_versioning: str = "inferred"
    database_url_var: str = "DATABASE_URL"


def _unquote(ident: str) -> str:
    """PostgreSQL's rule: a quoted identifier keeps its case, an unquoted one is folded to lower case."""
    if ident.startswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident.lower()


def parse_table_name(text: str, where: str) -> TableName:
    """``foo._sqlx_migrations`` / ``"My Schema"."ledger"`` -> :class:`TableName`; anything else is refused.

    sqlx pastes the value into its SQL as written; safemig quotes the parts itself, so the
    value must be one or two identifiers.
    """
    match = _table_name_pattern().match(text.strip())
    if not match:
        raise ConfigError(
            f"{where}: table-name {text!r} is not a table name",
            hint='write it like "_sqlx_migrations" or "ops._sqlx_migrations"',
        )
    schema = match["schema"]
    return TableName(_unquote(match["name"]), _unquote(schema) if schema else None)


def _string(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string", hint=f'e.g. {key} = "..."')
    return value


def _choice(value: Any, key: str, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigError(
            f"{where}: {key} = {value!r} is not one of {', '.join(allowed)}", hint=f'e.g. {key} = "{allowed[-1]}"'
        )
    return value


def parse(data: dict[str, Any], where: str, path: Path | None = None) -> SqlxConfig:
    """Validate the parsed TOML of a ``sqlx.toml``."""
    common = data.get("common", {})
    migrate = data.get("migrate", {})
    if not isinstance(common, dict) or not isinstance(migrate, dict):
        raise ConfigError(
            f"{where}: [common] and [migrate] must be tables", hint="write [migrate] then key = value lines"
        )
    unknown = sorted(set(migrate) - _MIGRATE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key migrate.{unknown[0]}",
            hint=f"sqlx knows {', '.join(sorted(_MIGRATE_KEYS))} (sqlx refuses unknown keys too)",
        )
    chars = migrate.get("ignored-chars", [])
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise ConfigError(
            f"{where}: migrate.ignored-chars must be a list of single characters", hint='e.g. ignored-chars = ["\\r"]'
        )
    schemas = migrate.get("create-schemas", [])
    if not isinstance(schemas, list) or not all(isinstance(s, str) and s for s in schemas):
        raise ConfigError(f"{where}: migrate.create-schemas must be a list of schema names", hint='e.g. ["ops"]')
    defaults = migrate.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: [migrate.defaults] must be a table", hint='e.g. migration-type = "reversible"')
    table = migrate.get("table-name")
    table_name = parse_table_name(_string(table, "migrate.table-name", where), where) if table is not None else None
    return SqlxConfig(
        path=path,
        migrations_dir=_string(migrate["migrations-dir"], "migrate.migrations-dir", where)
        if "migrations-dir" in migrate
        else None,
        table=table_name or TableName(),
        ignored_chars=frozenset(chars),
        # sqlx keeps them in a BTreeSet: created in sorted order, each once
        create_schemas=tuple(sorted(set(schemas))),
        migration_type=_choice(defaults.get("migration-type", "inferred"), "migration-type", MIGRATION_TYPES, where),
        migration_versioning=_choice(
            defaults.get("migration-versioning", "inferred"), "migration-versioning", VERSIONINGS, where
        ),
        database_url_var=_string(common.get("database-url-var", "DATABASE_URL"), "common.database-url-var", where),
    )


def load(root: Path) -> SqlxConfig:
    """``root/sqlx.toml`` parsed, or sqlx's defaults when the file does not exist."""
    path = root / SQLX_CONFIG_FILE_NAME
    if not path.is_file():
        return SqlxConfig()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="check the file's permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the syntax at the line named") from None
    return parse(data, str(path), path)


def default_migrations_dir(root: Path, sqlx: SqlxConfig) -> str:
    """The migrations directory when neither ``--source`` nor ``safemig.toml`` names one.

    ``sqlx.toml``'s ``migrations-dir``; else ``migrations/`` (sqlx's default) if it exists;
    else ``docker/migrations`` (the guide's layout) if that exists; else ``migrations``,
    which ``migrate add`` creates, as sqlx does.
    """
    if sqlx.migrations_dir:
        return sqlx.migrations_dir
    if (root / SQLX_MIGRATIONS_DIR).is_dir():
        return SQLX_MIGRATIONS_DIR
    if (root / GUIDE_MIGRATIONS_DIR).is_dir():
        return GUIDE_MIGRATIONS_DIR
    return SQLX_MIGRATIONS_DIR
