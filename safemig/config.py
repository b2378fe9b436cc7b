"""Load ``safemig.toml`` (or ``[tool.safemig]`` in ``pyproject.toml``) into typed settings.

Secrets never live in the file: values may say ``${VAR}`` or ``${VAR:-default}``.
Interpolation happens when a value is *used*, not when the file is read, so
``safemig lint`` works on a machine that has no ``DATABASE_URL`` while ``safemig
migrate run --env prod`` there says exactly which variable is missing.

Sections other code owns (``[backup]``, ``[lint]``, ``[deploy]``) are kept as plain
dicts in :attr:`Config.sections`; their modules validate them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safemig import sqlx_config
from safemig.errors import ConfigError, UsageError

CONFIG_FILE_NAME = "safemig.toml"
# Without migrations_dir: sqlx.toml's, else migrations/ or docker/migrations, whichever exists
# (safemig.sqlx_config.default_migrations_dir).
DEFAULT_MIGRATIONS_DIR = "migrations"
DEFAULT_ROLLBACKS_DIR = "rollbacks"
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "15min"

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")

_TOP_LEVEL_KEYS = {"migrations_dir", "rollbacks_dir", "envs"}


def interpolate(value: str, setting: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in ``value``; an unset VAR without default is an error."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise ConfigError(
            f"setting {setting} refers to ${{{name}}}, which is not set",
            hint=f"export {name}=... or write ${{{name}:-default}} in the config",
        )

    return _VAR.sub(substitute, value)


@dataclass(frozen=True)
class EnvConfig:
    """One ``[envs.NAME]`` table. Values are interpolated on access."""

    name: str
    raw: dict[str, Any]
    source: str  # where it came from, for messages ("safemig.toml")

    def get(self, key: str, default: Any = None) -> Any:
        """The interpolated value of ``key`` (strings only are interpolated)."""
        value = self.raw.get(key, default)
        if isinstance(value, str):
            return interpolate(value, f"envs.{self.name}.{key} in {self.source}")
        return value

    @property
    def database_url(self) -> str | None:
        return self.get("database_url")

    @property
    def staging(self) -> str | None:
        """Name of the env that rehearses this one's deploys; ``"none"`` means explicitly none."""
        return self.raw.get("staging")

    @property
    def lock_timeout(self) -> str:
        return str(self.get("lock_timeout", DEFAULT_LOCK_TIMEOUT))

    @property
    def statement_timeout(self) -> str:
        return str(self.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT))


@dataclass(frozen=True)
class Config:
    """Everything safemig read from its configuration, with paths made absolute."""

    root: Path
    path: Path | None
    migrations_dir: Path
    rollbacks_dir: Path
    envs: dict[str, EnvConfig] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    sqlx: sqlx_config.SqlxConfig = field(default_factory=sqlx_config.SqlxConfig)  # sqlx.toml

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "(defaults)"

    def env(self, name: str) -> EnvConfig:
        """The env called ``name``; an unknown env is a usage error listing the known ones."""
        try:
            return self.envs[name]
        except KeyError:
            known = ", ".join(sorted(self.envs)) or "none"
            raise UsageError(
                f"unknown env {name!r} (known: {known}) in {self.source}",
                hint=f'add an [envs.{name}] table with database_url = "${{...}}" to {CONFIG_FILE_NAME}',
            ) from None

    def section(self, name: str) -> dict[str, Any]:
        """A top-level table owned by another module (``backup``, ``lint``, ...), or ``{}``."""
        value = self.sections.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(
                f"[{name}] in {self.source} must be a table", hint=f"write [{name}] followed by key = value lines"
            )
        return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(
            f"cannot read config {path}: {exc.strerror}", hint="check the path given to --config"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the syntax at the line named") from None


def find_config(cwd: Path) -> tuple[Path | None, dict[str, Any]]:
    """Locate the config in ``cwd``: ``safemig.toml`` first, then ``[tool.safemig]`` of ``pyproject.toml``."""
    candidate = cwd / CONFIG_FILE_NAME
    if candidate.is_file():
        return candidate, _read_toml(candidate)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject).get("tool", {}).get("safemig")
        if isinstance(data, dict):
            return pyproject, data
    return None, {}


def load_config(
    path: Path | str | None = None, cwd: Path | str | None = None, *, source: Path | str | None = None
) -> Config:
    """Read the configuration; with no file at all, the defaults (sqlx's layout) apply.

    ``source`` (the ``--source DIR`` option, sqlx-cli's name) replaces ``migrations_dir``.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    if path is not None:
        cfg_path: Path | None = Path(path)
        if not cfg_path.is_absolute():
            cfg_path = base / cfg_path
        if not cfg_path.is_file():
            raise ConfigError(f"config file {cfg_path} not found", hint="check the path given to --config")
        data = _read_toml(cfg_path)
        if cfg_path.name == "pyproject.toml":
            data = data.get("tool", {}).get("safemig", {})
    else:
        cfg_path, data = find_config(base)
    root = cfg_path.parent if cfg_path else base
    origin = cfg_path.name if cfg_path else "(defaults)"  # for messages

    def dir_setting(key: str, default: str) -> Path:
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} in {origin} must be a non-empty string", hint=f'e.g. {key} = "{default}"')
        return (root / interpolate(value, f"{key} in {origin}")).resolve()

    envs_raw = data.get("envs", {})
    if not isinstance(envs_raw, dict):
        raise ConfigError(
            f"envs in {origin} must be tables like [envs.prod]", hint="write [envs.prod] then database_url = ..."
        )
    envs: dict[str, EnvConfig] = {}
    for name, table in envs_raw.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"envs.{name} in {origin} must be a table", hint=f"write [envs.{name}] then database_url = ..."
            )
        envs[name] = EnvConfig(name=name, raw=dict(table), source=origin)
    sqlx = sqlx_config.load(root)

    return Config(
        root=root,
        path=cfg_path,
        migrations_dir=(base / source).resolve()
        if source is not None
        else dir_setting("migrations_dir", sqlx_config.default_migrations_dir(root, sqlx)),
        rollbacks_dir=dir_setting("rollbacks_dir", DEFAULT_ROLLBACKS_DIR),
        envs=envs,
        sections={k: v for k, v in data.items() if k not in _TOP_LEVEL_KEYS},
        sqlx=sqlx,
    )


def resolve_database_url(config: Config, env: str | None = None, database_url: str | None = None) -> str:
    """The URL a database command should use: ``--database-url``, else ``--env``, else ``DATABASE_URL``.

    ``.env`` is loaded first (as sqlx-cli does; :mod:`safemig.envfile`), ``sqlx.toml``'s
    ``common.database-url-var`` renames ``DATABASE_URL``, and sqlx's URL parameters are
    translated for libpq (:mod:`safemig.pgurl`), so pg_dump gets a URL it accepts too.
    An empty string is allowed to mean "libpq defaults" (PGHOST, PGUSER, .pgpass, ...),
    which psycopg passes through, as sqlx's ``DATABASE_URL`` does not.
    """
    from safemig import envfile
    from safemig.pgurl import libpq_url

    envfile.load()
    return libpq_url(_resolve_database_url(config, env, database_url))


def _resolve_database_url(config: Config, env: str | None, database_url: str | None) -> str:
    if database_url and env:
        raise UsageError("give either --env or --database-url, not both", hint="--env picks the URL from the config")
    if database_url:
        return database_url
    if env:
        url = config.env(env).database_url
        if not url:
            raise ConfigError(
                f"envs.{env}.database_url is not set in {config.source}",
                hint=f'add database_url = "${{DATABASE_URL}}" under [envs.{env}]',
            )
        return url
    var = config.sqlx.database_url_var
    url = os.environ.get(var)
    if url:
        return url
    if os.environ.get("PGHOST") or os.environ.get("PGDATABASE") or os.environ.get("PGSERVICE"):
        return ""  # libpq environment variables
    raise UsageError(
        "no database given",
        hint=f"pass --env NAME or --database-url URL, or set {var} (in .env too; libpq's PG* variables also work)",
    )
