"""Load ``safemig.toml`` (or ``[tool.safemig]`` in ``pyproject.toml``) into typed, checked settings.

The file is checked whole when it is read, before any command contacts a database or S3:

* every table rejects a key it does not know, naming the file, the line, the key and the
  closest known key (a typo such as ``maintenance_windows`` would otherwise switch a safety
  check off without a word);
* every ``[envs.NAME]`` table is parsed once into an :class:`EnvSettings`, the one settings
  object ``migrate``, ``deploy``, ``runbook`` and ``backup`` all use, with one set of defaults
  and limits; durations are read exactly as PostgreSQL reads them (:mod:`safemig.durations`).

Secrets never live in the file: values may say ``${VAR}`` or ``${VAR:-default}``. An env's
``database_url`` is interpolated when it is *used* (:func:`resolve_database_url`), so
``safemig lint`` works on a machine that has no ``DATABASE_URL``; every other value is
interpolated when the file is read.

The values of ``[backup]`` and ``[lint]`` are parsed by their own modules
(:mod:`safemig.backup.settings`, :mod:`safemig.lint.policy`) from :meth:`Config.section`;
which keys those tables may hold is declared here, so that a typo in them is found at load
time by every command, like one anywhere else.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from safemig import sqlx_config, values
from safemig.durations import Duration
from safemig.errors import ConfigError, UsageError
from safemig.tomllines import KeyLines

if TYPE_CHECKING:  # pragma: no cover
    from safemig.window import Window

CONFIG_FILE_NAME = "safemig.toml"
# Without migrations_dir: sqlx.toml's, else migrations/ or docker/migrations, whichever exists
# (safemig.sqlx_config.default_migrations_dir).
DEFAULT_MIGRATIONS_DIR = "migrations"
DEFAULT_ROLLBACKS_DIR = "rollbacks"
NO_STAGING = "none"

KeyPath = tuple[str | int, ...]  # a key's path in the parsed data: ("envs", "prod", "lock_timeout")
_Where = Callable[[KeyPath], str]  # a key path -> "safemig.toml:12", for messages

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")

# The keys of the tables whose values other modules parse. A key added to [backup] or [lint]
# is added here too (the test suite checks these agree with the modules that read them).
TOP_LEVEL_KEYS = frozenset({"migrations_dir", "rollbacks_dir", "out_of_order", "envs", "backup", "lint"})
BACKUP_KEYS = frozenset(
    {
        "bucket",
        "prefix",
        "storage_class",
        "sse",
        "kms_key_id",
        "endpoint_url",
        "region",
        "compression",
        "part_size_mb",
        "concurrency",
        "pg_bin_dir",
        "sdk_checksums",
        "stall_timeout",
        "lock_wait_timeout",
        "keep_last",
        "keep_days",
        "spool_dir",
        "role_passwords",
    }
)
LINT_KEYS = frozenset({"rules", "exceptions", "house_rules", "pg_version", "rule_docs_url"})
LINT_EXCEPTION_KEYS = frozenset({"paths", "rules", "reason"})
OUT_OF_ORDER = ("refuse", "warn", "allow")  # out_of_order, at the top level or in an env


def interpolate(value: str, setting: str, environ: Mapping[str, str] | None = None) -> str:
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
            f"{setting} refers to ${{{name}}}, which is not set",
            hint=f"export {name}=... or write ${{{name}:-default}} in the config",
        )

    return _VAR.sub(substitute, value)


class Deferred(NamedTuple):
    """A string whose ``${VAR}`` references are resolved only when it is used (an env's database_url)."""

    text: str  # as written in the config, e.g. "${DATABASE_URL}"
    setting: str  # for messages: "envs.prod.database_url in safemig.toml"

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        return interpolate(self.text, self.setting, environ)


def _deferred(value: Any, setting: str) -> Deferred:
    if not isinstance(value, str):
        raise ConfigError(f"{setting} must be a string, not {value!r}", hint='e.g. database_url = "${DATABASE_URL}"')
    return Deferred(value, setting)


def _staging(value: Any, setting: str) -> str | None:
    """An env name or ``"none"`` (None); that the env exists is checked once all envs are read."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f'{setting} must be an env name or "none", not {value!r}', hint='e.g. staging = "staging"')
    return None if value == NO_STAGING else value


def _windows(value: Any, setting: str) -> tuple[Window, ...]:
    from safemig.window import parse_windows  # zoneinfo: only for configs that have a window

    return tuple(parse_windows(value, setting))


def _closest(word: str, known: Any) -> str | None:
    """The known name closest to a misspelt one (difflib imported only when there is a mistake)."""
    from difflib import get_close_matches

    found = get_close_matches(word, sorted(known), n=1)
    return found[0] if found else None


class Setting(NamedTuple):
    """How one ``[envs.NAME]`` key is read: its parser, its default as written in TOML, one doc line."""

    parse: values.Parser[Any]
    default: Any  # the raw TOML value (None: unset); parsed like a written one
    doc: str
    deferred: bool = False  # ${VAR} resolved on use (database_url), not at load


def setting(parse: values.Parser[Any], default: Any, doc: str, *, absent: Any = None, deferred: bool = False) -> Any:
    """Declare an env key: use as the default of an :class:`EnvSettings` field named after the key.

    ``default`` is written as in TOML and parsed like a written value; with no default
    (``None``), an env without the key gets ``absent``.
    """
    declared = Setting(parse, default, doc, deferred)
    value = parse(default, f"the default of {doc}") if default is not None else absent
    return field(default=value, metadata={"setting": declared})


@dataclass(frozen=True)
class EnvSettings:
    """One ``[envs.NAME]`` table, parsed and checked once when the config is read.

    To add a key, declare it here, once: ``name: Type = setting(parser, default, "doc line")``,
    with a parser from :mod:`safemig.values` (or any ``Parser``) and the default as it would be
    written in TOML. The field's name is the TOML key; the strict key check, the CLI option
    overrides (:meth:`with_options`) and the README's table of keys all follow from it.
    """

    env: str  # the env's name
    source: str = "(defaults)"  # the config file, for messages
    explicit: frozenset[str] = frozenset()  # the keys the table actually sets

    database_url: Deferred | None = setting(
        values.Parser("string; `${VAR}` resolved when used", _deferred),
        None,
        "the env's database; `${VAR}` is resolved only when a command uses it",
        deferred=True,
    )
    staging: str | None = setting(
        values.Parser('env name or `"none"`', _staging),
        None,
        'the env that rehearses this one\'s deploys, or "none"; required by `safemig deploy`',
    )
    protected: bool = setting(
        values.boolean(),
        False,
        "`migrate run`/`revert`/`mark-applied` and `restore` into it ask first and honour the window "
        "(an env with a `staging` is protected anyway)",
    )
    maintenance_window: tuple[Window, ...] = setting(
        values.Parser('`"DAYS HH:MM-HH:MM Zone"`, or an array of them', _windows),
        None,
        'when deploys may run (absent: always open); e.g. `"Sat,Sun 02:00-04:00 Europe/Berlin"`',
        absent=(),
    )
    lock_timeout: Duration = setting(
        values.pg_duration("lock_timeout"), "5s", "every migrating session's lock_timeout (deploy, migrate --env)"
    )
    statement_timeout: Duration = setting(
        values.pg_duration("statement_timeout"), "15min", "every migrating session's statement_timeout"
    )
    lock_retries: int = setting(
        values.integer(0, 100), 3, "retries of a migration that hit lock_timeout, with exponential backoff"
    )
    retry_backoff: Duration = setting(
        values.duration(maximum_s=3600), "2s", "the first retry's delay; it doubles with each retry (at most 60s)"
    )
    ready_timeout: Duration = setting(
        values.duration(maximum_s=3600), "30s", "how long deploy's preflight waits for a database to accept connections"
    )
    connect_timeout: Duration = setting(
        values.duration(maximum_s=3600), "10s", "how long `migrate` retries connecting (sqlx-cli's `--connect-timeout`)"
    )
    out_of_order: str | None = setting(
        values.choice(*OUT_OF_ORDER),
        None,
        "pending versions older than the newest applied one (absent: the top-level `out_of_order`, else refuse)",
    )
    rehearsal: str = setting(
        values.choice("restore", "staging"),
        "restore",
        "deploy rehearses on a restore of the backup it just took, or on the staging env's own database",
    )
    rehearsal_data: str = setting(
        values.choice("touched", "all"),
        "touched",
        "which rows the restore-mode rehearsal restores: of the tables the migrations touch, or all",
    )
    window_margin: float = setting(
        values.number(1, 100),
        1.5,
        "the rehearsal's duration times this must fit in what is left of the maintenance window",
    )
    rollback_must_restore_schema: bool = setting(
        values.boolean(), False, "a rollback that leaves the schema changed fails the rehearsal (else: a warning)"
    )

    @classmethod
    def declarations(cls) -> dict[str, Setting]:
        """Every env key with its declaration, in declaration order."""
        return {f.name: f.metadata["setting"] for f in fields(cls) if "setting" in f.metadata}

    def with_options(self, **options: Any) -> EnvSettings:
        """These settings with command-line values over them (None: not given), parsed like config values.

        ``--lock-retries 500`` is refused exactly as ``lock_retries = 500`` is.
        """
        return replace(self, **parse_options(**options))


def parse_options(**options: Any) -> dict[str, Any]:
    """Command-line values for env keys (``lock_timeout="30s"``), checked by the keys' own parsers."""
    declared = EnvSettings.declarations()
    parsed = {}
    for key, value in options.items():
        if value is not None:
            parsed[key] = declared[key].parse(value, f"--{key.replace('_', '-')}")
    return parsed


ENV_KEYS = frozenset(EnvSettings.declarations())

# Which keys each table may hold: a path pattern ("*": any name, "#": each element of an
# array of tables) -> its keys, or None where the names are free (env names, rule ids).
_SCHEMA: dict[tuple[str, ...], frozenset[str] | None] = {
    (): TOP_LEVEL_KEYS,
    ("envs",): None,
    ("envs", "*"): ENV_KEYS,
    ("backup",): BACKUP_KEYS,
    ("lint",): LINT_KEYS,
    ("lint", "rules"): None,  # rule ids: checked by the linter against its registry
    ("lint", "exceptions", "#"): LINT_EXCEPTION_KEYS,
}


@dataclass(frozen=True)
class Config:
    """Everything safemig read from its configuration, with paths made absolute."""

    root: Path
    path: Path | None
    migrations_dir: Path
    rollbacks_dir: Path
    env_tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # [envs.*] as written
    sections: dict[str, Any] = field(default_factory=dict)
    lines: KeyLines = field(default_factory=KeyLines, compare=False)  # where each key is written
    sqlx: sqlx_config.SqlxConfig = field(default_factory=sqlx_config.SqlxConfig)  # sqlx.toml

    @cached_property
    def envs(self) -> dict[str, EnvSettings]:
        """Every env, parsed and checked (all at once, on first use: see :func:`load_config`)."""
        envs = {name: _parse_env(name, table, self._where, self._origin) for name, table in self.env_tables.items()}
        _check_staging(envs, self._where)
        return envs

    @property
    def _origin(self) -> str:
        return self.path.name if self.path else "(defaults)"

    def _where(self, key: KeyPath) -> str:
        return _where(self.path, self.lines, key)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "(defaults)"

    def where(self, *path: str | int) -> str:
        """``safemig.toml:12`` for a key path (its nearest enclosing table if the key is not written)."""
        return self._where(path)

    def env(self, name: str) -> EnvSettings:
        """The env called ``name``; an unknown env is a usage error suggesting the closest one."""
        try:
            return self.envs[name]
        except KeyError:
            close = _closest(name, self.envs)
            known = ", ".join(sorted(self.envs)) or "none"
            raise UsageError(
                f"unknown env {name!r} in {self.source}" + (f"; did you mean {close}?" if close else ""),
                hint=f'known envs: {known}; an env is an [envs.{name}] table with database_url = "${{...}}"'
                if self.envs
                else f'add an [envs.{name}] table with database_url = "${{...}}" to {CONFIG_FILE_NAME}',
            ) from None

    def section(self, name: str) -> dict[str, Any]:
        """A top-level table owned by another module (``backup``, ``lint``, ...), or ``{}``."""
        value = self.sections.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(
                f"[{name}] in {self.source} must be a table", hint=f"write [{name}] followed by key = value lines"
            )
        return value


def _display(path: Path) -> str:
    """The config file as messages name it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _where(path: Path | None, lines: KeyLines, key: KeyPath) -> str:
    if path is None:
        return "(defaults)"
    line = lines.line(key)
    return f"{_display(path)}:{line}" if line else _display(path)


def _read_toml(path: Path) -> dict[str, Any]:
    data, _ = _read_toml_text(path)
    return data


def _read_toml_text(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config {path}: {exc.strerror}", hint="check the path given to --config"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}", hint="save the file as UTF-8") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the syntax at the line named") from None


def _tool_table(data: dict[str, Any]) -> dict[str, Any] | None:
    tool = data.get("tool", {})
    found = tool.get("safemig") if isinstance(tool, dict) else None
    return found if isinstance(found, dict) else None


def find_config(cwd: Path) -> tuple[Path | None, dict[str, Any]]:
    """Locate the config in ``cwd``: ``safemig.toml`` first, then ``[tool.safemig]`` of ``pyproject.toml``."""
    found = _find(cwd)
    return (found[0], found[1]) if found else (None, {})


def _find(cwd: Path) -> tuple[Path, dict[str, Any], KeyLines] | None:
    candidate = cwd / CONFIG_FILE_NAME
    if candidate.is_file():
        data, text = _read_toml_text(candidate)
        return candidate, data, KeyLines(text)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        data, text = _read_toml_text(pyproject)
        table = _tool_table(data)
        if table is not None:
            return pyproject, table, KeyLines(text, ("tool", "safemig"))
    return None


def _table_label(path: KeyPath) -> str:
    """``in [envs.prod]``, ``in [[lint.exceptions]] #2``, ``at the top level``."""
    if not path:
        return "at the top level"
    if isinstance(path[-1], int):
        return f"in [[{'.'.join(str(p) for p in path[:-1])}]] #{path[-1] + 1}"
    return f"in [{'.'.join(str(p) for p in path)}]"


def check_keys(data: Mapping[str, Any], where: _Where) -> None:
    """Refuse any key the schema does not know, in every table; ``where(path)`` gives ``file:line``."""

    def walk(table: Mapping[str, Any], pattern: tuple[str, ...], path: KeyPath) -> None:
        known = _SCHEMA[pattern]
        if known is not None:
            for key in table:
                if key not in known:
                    close = _closest(key, known)
                    inside = _table_label(path)
                    raise ConfigError(
                        f"{where((*path, key))}: unknown key {key} {inside}"
                        + (f"; did you mean {close}?" if close else ""),
                        hint=f"known keys {inside}: " + ", ".join(sorted(known)),
                    )
        for key, value in table.items():
            child = next((c for c in ((*pattern, key), (*pattern, "*")) if c in _SCHEMA), None)
            if child is not None:
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"{where((*path, key))}: {'.'.join(str(p) for p in (*path, key))} must be a table",
                        hint=f"write [{'.'.join(str(p) for p in (*path, key))}] followed by key = value lines",
                    )
                walk(value, child, (*path, key))
            elif (*pattern, key, "#") in _SCHEMA and isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, dict):  # a non-table element is its owner's error to report
                        walk(item, (*pattern, key, "#"), (*path, key, index))

    walk(data, (), ())


def _parse_env(name: str, table: Mapping[str, Any], where: _Where, source: str) -> EnvSettings:
    parsed: dict[str, Any] = {}
    for key, declared in EnvSettings.declarations().items():
        if key not in table:
            continue
        raw = table[key]
        label = f"{where(('envs', name, key))}: envs.{name}.{key}"
        if isinstance(raw, str) and not declared.deferred:
            raw = interpolate(raw, label)
        parsed[key] = declared.parse(raw, label)
    return EnvSettings(env=name, source=source, explicit=frozenset(table), **parsed)


def _check_staging(envs: Mapping[str, EnvSettings], where: _Where) -> None:
    for name, env in envs.items():
        if env.staging is None:
            continue
        at = f"{where(('envs', name, 'staging'))}: envs.{name}.staging"
        if env.staging == name:
            raise ConfigError(f"{at} names the env itself", hint="staging must be a different database")
        if env.staging not in envs:
            close = _closest(env.staging, envs)
            raise ConfigError(
                f"{at} = {env.staging!r} is not an env" + (f"; did you mean {close}?" if close else ""),
                hint=f'known envs: {", ".join(sorted(envs))}; or staging = "none" to deploy without a rehearsal',
            )


def load_config(
    path: Path | str | None = None,
    cwd: Path | str | None = None,
    *,
    source: Path | str | None = None,
    check_envs: bool = True,
) -> Config:
    """Read and check the configuration; with no file at all, the defaults (sqlx's layout) apply.

    ``source`` (the ``--source DIR`` option, sqlx-cli's name) replaces ``migrations_dir``.
    Every table's keys are checked here. With ``check_envs`` (the default) so is every value of
    every env; ``safemig lint``, which uses no env, passes False and leaves that to the first use
    of :attr:`Config.envs` (it then costs a commit hook nothing: a window needs zoneinfo).
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    cfg_path: Path | None
    data: dict[str, Any]
    lines: KeyLines
    if path is not None:
        cfg_path = Path(path)
        if not cfg_path.is_absolute():
            cfg_path = base / cfg_path
        if not cfg_path.is_file():
            raise ConfigError(f"config file {cfg_path} not found", hint="check the path given to --config")
        data, text = _read_toml_text(cfg_path)
        lines = KeyLines(text)
        if cfg_path.name == "pyproject.toml":
            data = _tool_table(data) or {}
            lines = KeyLines(text, ("tool", "safemig"))
    else:
        found = _find(base)
        cfg_path, data, lines = found if found else (None, {}, KeyLines())
    root = cfg_path.parent if cfg_path else base
    origin = cfg_path.name if cfg_path else "(defaults)"  # for messages

    def where(key: KeyPath) -> str:
        return _where(cfg_path, lines, key)

    check_keys(data, where)
    if "out_of_order" in data:  # the one top-level value not read by a section's module
        values.choice(*OUT_OF_ORDER)(data["out_of_order"], f"{where(('out_of_order',))}: out_of_order")

    def dir_setting(key: str, default: str) -> Path:
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where((key,))}: {key} must be a non-empty string", hint=f'e.g. {key} = "{default}"')
        return (root / interpolate(value, f"{key} in {origin}")).resolve()

    sqlx = sqlx_config.load(root)
    config = Config(
        root=root,
        path=cfg_path,
        migrations_dir=(base / source).resolve()
        if source is not None
        else dir_setting("migrations_dir", sqlx_config.default_migrations_dir(root, sqlx)),
        rollbacks_dir=dir_setting("rollbacks_dir", DEFAULT_ROLLBACKS_DIR),
        env_tables=data.get("envs", {}),
        sections={k: v for k, v in data.items() if k not in {"migrations_dir", "rollbacks_dir", "envs"}},
        lines=lines,
        sqlx=sqlx,
    )
    if check_envs:
        config.envs  # noqa: B018 - parse and check every env now, before any command contacts anything
    return config


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
        template = config.env(env).database_url
        url = template.resolve() if template is not None else None
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


def env_keys_markdown() -> str:
    """The README's table of ``[envs.NAME]`` keys, generated from the declarations (a test keeps them equal)."""
    rows = ["| key | accepts | default | what it does |", "| --- | --- | --- | --- |"]
    for key, declared in EnvSettings.declarations().items():
        default = "—" if declared.default is None else f"`{_toml_value(declared.default)}`"
        rows.append(f"| `{key}` | {declared.parse.kind} | {default} | {declared.doc} |")
    return "\n".join(rows)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
