"""What a deploy needs of an env beyond its parsed settings.

``[envs.NAME]`` is parsed once, by :func:`safemig.config.load_config`, into the
:class:`~safemig.config.EnvSettings` that every command uses (its keys, defaults and limits
are declared there). A deploy additionally requires the env to say which env rehearses it
(``staging = "NAME"``, or ``staging = "none"`` to deploy without a rehearsal), and turns the
settings into the engine's session settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safemig.config import Config, EnvSettings
from safemig.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from safemig.migrations.engine import ApplySettings


def deploy_settings(config: Config, env_name: str) -> EnvSettings:
    """The settings of ``env_name`` for a deploy; an env that names no staging env is refused."""
    settings = config.env(env_name)
    if "staging" not in settings.explicit:
        raise ConfigError(
            f"{config.where('envs', env_name)}: envs.{env_name} names no staging env to rehearse its deploys on",
            hint=f'add staging = "staging" (the env name) under [envs.{env_name}], '
            'or staging = "none" to deploy without a rehearsal',
        )
    return settings


def apply_settings(settings: EnvSettings) -> ApplySettings:
    """The engine's :class:`ApplySettings` for every migrating session of this env (its staging rehearsal too)."""
    from safemig.migrations.engine import ApplySettings

    return ApplySettings(
        lock_timeout=str(settings.lock_timeout),
        statement_timeout=str(settings.statement_timeout),
        lock_retries=settings.lock_retries,
        retry_backoff=settings.retry_backoff.seconds,
    )
