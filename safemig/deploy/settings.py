"""An env's deploy settings, read from its ``[envs.NAME]`` table and checked before anything runs.

Keys (all optional except where said)::

    [envs.prod]
    database_url = "${DATABASE_URL}"
    staging = "staging"            # required: the env that rehearses this one's deploys, or "none"
    maintenance_window = "Sat,Sun 02:00-04:00 Europe/Berlin"   # or an array of windows
    lock_timeout = "5s"            # every session of the deploy sets these
    statement_timeout = "15min"
    lock_retries = 3               # retries of a migration that hit lock_timeout
    retry_backoff = "2s"           # first retry delay; doubles each attempt
    ready_timeout = "30s"          # how long preflight waits for a database to accept connections
    rehearsal = "restore"          # or "staging": rehearse on a restore of the fresh backup, or on staging itself
    rehearsal_data = "touched"     # or "all": which rows the restore-mode rehearsal restores
    window_margin = 1.5            # the rehearsal's apply time x this must fit in what is left of the window
    rollback_must_restore_schema = false   # true: a rollback that leaves the schema changed fails the deploy

Every malformed value is a :class:`ConfigError` naming ``envs.NAME.KEY`` and the config
file, raised before any database is contacted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from safemig.config import Config, EnvConfig
from safemig.deploy.window import Window, parse_windows
from safemig.errors import ConfigError

DEFAULT_LOCK_RETRIES = 3
DEFAULT_RETRY_BACKOFF = "2s"
DEFAULT_READY_TIMEOUT = "30s"
NO_STAGING = "none"
REHEARSAL_MODES = ("restore", "staging")
REHEARSAL_DATA = ("touched", "all")
DEFAULT_WINDOW_MARGIN = 1.5

_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>us|ms|s|min|h|d)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def duration_seconds(value: object, setting: str, *, default_unit: str = "ms") -> float:
    """Seconds in a PostgreSQL-style duration (``"5s"``, ``"500ms"``, ``"15min"``, ``"0"``).

    A bare number uses ``default_unit`` (PostgreSQL reads a bare ``lock_timeout`` as ms).
    """
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)):
        value = str(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ConfigError(
            f"{setting} = {value!r} is not a duration",
            hint=f'write {setting.rsplit(".", 1)[-1]} like "5s", "500ms", "15min" or "1h"',
        )
    return float(match["number"]) * _UNIT_SECONDS[match["unit"] or default_unit]


@dataclass(frozen=True)
class DeploySettings:
    """What ``safemig deploy --env NAME`` needs to know about NAME, validated."""

    env: str
    staging: str | None  # None: explicitly no staging (staging = "none")
    windows: list[Window]
    lock_timeout: str
    statement_timeout: str
    lock_retries: int
    retry_backoff_s: float
    ready_timeout_s: float
    rehearsal: str = "restore"
    rehearsal_data: str = "touched"
    window_margin: float = DEFAULT_WINDOW_MARGIN
    rollback_must_restore_schema: bool = False

    @property
    def apply_settings(self):
        """The engine's :class:`ApplySettings` for every session of this deploy (staging included)."""
        from safemig.migrations.engine import ApplySettings

        return ApplySettings(
            lock_timeout=self.lock_timeout,
            statement_timeout=self.statement_timeout,
            lock_retries=self.lock_retries,
            retry_backoff=self.retry_backoff_s,
        )


def _setting(env: EnvConfig, key: str) -> str:
    return f"envs.{env.name}.{key} in {env.source}"


def _choice(env: EnvConfig, key: str, choices: tuple[str, ...]) -> str:
    value = env.get(key, choices[0])
    if value not in choices:
        raise ConfigError(
            f"{_setting(env, key)} = {value!r} is not one of " + ", ".join(f'"{c}"' for c in choices),
            hint=f'e.g. {key} = "{choices[0]}"',
        )
    return value


def deploy_settings(config: Config, env_name: str) -> DeploySettings:
    """Read and check ``[envs.<env_name>]`` for a deploy; the staging env must exist and differ."""
    env = config.env(env_name)
    staging = env.staging
    if staging is None:
        raise ConfigError(
            f"envs.{env_name} in {config.source} names no staging env to rehearse its deploys on",
            hint=(
                f'add staging = "staging" (the env name) under [envs.{env_name}], or staging = "none" to '
                "deploy without a rehearsal"
            ),
        )
    if not isinstance(staging, str) or not staging:
        raise ConfigError(f'{_setting(env, "staging")} must be an env name or "none"', hint='e.g. staging = "staging"')
    if staging == NO_STAGING:
        staging_name: str | None = None
    else:
        if staging == env_name:
            raise ConfigError(
                f"{_setting(env, 'staging')} names the env itself", hint="staging must be a different database"
            )
        config.env(staging)  # unknown env: UsageError listing the known ones
        staging_name = staging

    windows = parse_windows(env.get("maintenance_window"), _setting(env, "maintenance_window"))

    lock_timeout = env.lock_timeout
    statement_timeout = env.statement_timeout
    duration_seconds(lock_timeout, _setting(env, "lock_timeout"))
    duration_seconds(statement_timeout, _setting(env, "statement_timeout"))

    retries = env.get("lock_retries", DEFAULT_LOCK_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ConfigError(
            f"{_setting(env, 'lock_retries')} must be a whole number from 0 to 100", hint="e.g. lock_retries = 3"
        )
    backoff = duration_seconds(
        env.get("retry_backoff", DEFAULT_RETRY_BACKOFF), _setting(env, "retry_backoff"), default_unit="s"
    )
    ready = duration_seconds(
        env.get("ready_timeout", DEFAULT_READY_TIMEOUT), _setting(env, "ready_timeout"), default_unit="s"
    )
    rehearsal = _choice(env, "rehearsal", REHEARSAL_MODES)
    rehearsal_data = _choice(env, "rehearsal_data", REHEARSAL_DATA)
    margin = env.get("window_margin", DEFAULT_WINDOW_MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 1.0 <= margin <= 100.0:
        raise ConfigError(
            f"{_setting(env, 'window_margin')} must be a number from 1 to 100", hint="e.g. window_margin = 1.5"
        )
    must_restore = env.get("rollback_must_restore_schema", False)
    if not isinstance(must_restore, bool):
        raise ConfigError(
            f"{_setting(env, 'rollback_must_restore_schema')} must be true or false",
            hint="e.g. rollback_must_restore_schema = true",
        )
    return DeploySettings(
        env=env_name,
        rehearsal=rehearsal,
        rehearsal_data=rehearsal_data,
        window_margin=float(margin),
        rollback_must_restore_schema=must_restore,
        staging=staging_name,
        windows=windows,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        lock_retries=retries,
        retry_backoff_s=backoff,
        ready_timeout_s=ready,
    )
