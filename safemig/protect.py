"""Protected envs: the direct commands that change an env's database ask first and honour its window.

``safemig deploy`` is the gated path to a production database (backup, lint, rehearsal,
window). ``migrate run``, ``migrate revert``, ``migrate mark-applied`` and a ``restore`` into
the env's own database change it directly; on a *protected* env (one that names a
``staging``, or says ``protected = true``) they:

1. honour the maintenance window exactly as deploy's preflight judges it
   (:func:`safemig.window.evaluate`), with deploy's override ``--outside-window --reason``;
2. ask for the env's name to be typed on a terminal, and without a terminal need ``--yes``
   (a CI job that has not said so is refused, exit 2, before anything is contacted).

``--database-url`` names no env and is never protected: the guard keys on the env named. A
``restore --target-database-url`` that names the env's own database (:func:`same_database`)
is guarded as the restore into it is.
This module decides; it never prints. The caller passes ``ask`` (a prompt, or None when
stdin is not a terminal: :func:`terminal_ask`) and shows the notes :func:`guard` returns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from safemig.config import Config, EnvSettings
from safemig.errors import CheckFailed, UsageError

Ask = Callable[[str], str]  # shows a prompt, returns what was typed


def is_protected(settings: EnvSettings) -> bool:
    """An env that is deployed with a rehearsal (it names a staging), or says ``protected = true``."""
    return settings.staging is not None or settings.protected


@dataclass(frozen=True)
class Override:
    """Deploy's window override, given to a direct command: ``--outside-window --reason TEXT``."""

    outside_window: bool = False
    reason: str | None = None

    def check(self) -> None:
        """The same usage rules as ``safemig deploy``: the override needs a reason."""
        if self.outside_window and not (self.reason and self.reason.strip()):
            raise UsageError(
                "--outside-window needs --reason TEXT", hint='e.g. --outside-window --reason "hotfix for incident 1234"'
            )
        if self.reason and not self.outside_window:
            raise UsageError("--reason only goes with --outside-window", hint="drop --reason, or add --outside-window")


def terminal_ask() -> Ask | None:
    """The terminal prompt when stdin is a terminal (a person can answer), else None."""
    if not sys.stdin.isatty():
        return None
    from safemig import output

    return output.prompt


def guard(
    settings: EnvSettings,
    action: str,
    *,
    yes: bool,
    override: Override,
    ask: Ask | None,
    now: datetime | None = None,
) -> list[str]:
    """Allow ``action`` (``"apply pending migrations to"``) on a protected env, or raise.

    Returns the lines to show (empty for an unprotected env). Raises :class:`CheckFailed`
    outside the window without the override, or when the typed name does not match;
    :class:`UsageError` without ``--yes`` when there is no terminal to ask on.
    """
    override.check()
    if not is_protected(settings):
        return []
    from safemig.window import evaluate

    env = settings.env
    why = f"staging = {settings.staging!r}" if settings.staging is not None else "protected = true"
    notes = [
        f"{env} is a protected env ({why}): `safemig deploy --env {env}` is the gated path "
        f"(backup, lint, rehearsal, window); this command will {action} {env} directly"
    ]
    if not yes and ask is None:  # a usage error first: how it was invoked, before what the window says
        raise UsageError(
            f"{env} is a protected env and there is no terminal to confirm on: refusing to {action} it",
            hint=f"pass --yes to {action} {env} without asking, or use `safemig deploy --env {env}`",
        )
    window = evaluate(settings.maintenance_window, now)
    if not window.open:
        if not override.outside_window:
            raise CheckFailed(
                f"{env}: {window.describe()}; nothing was changed",
                hint=f"run it during the window, or pass --outside-window --reason TEXT (`safemig deploy --env {env}` "
                "is the gated path)",
            )
        notes.append(f"{window.describe()}; going ahead (--outside-window): {override.reason}")
    elif window.configured:
        notes.append(window.describe())
    if yes or ask is None:  # (ask is None only with --yes: refused above)
        return notes
    typed = ask("\n".join(notes) + f"\nType the env's name ({env}) to {action} it").strip()
    if typed != env:
        raise CheckFailed(
            f"confirmation {typed!r} is not {env!r}: refusing to {action} {env}; nothing was changed",
            hint=f"type {env} exactly, or pass --yes",
        )
    return []  # already shown with the prompt


def guard_env(
    config: Config,
    env: str,
    action: str,
    *,
    yes: bool,
    override: Override,
    warn: Callable[[str], None],
    ask: Ask | None = None,
) -> bool:
    """:func:`guard` for ``--env NAME`` of ``config``, asking on the terminal if there is one.

    ``warn`` shows the notes (the command layer passes :func:`safemig.output.warn`). True if the env is protected.
    """
    settings = config.env(env)
    for note in guard(settings, action, yes=yes, override=override, ask=ask or terminal_ask()):
        warn(note)
    return is_protected(settings)


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})


def _address(url: str) -> tuple[str, str, str]:
    """(host, port, database) of a libpq URL or conninfo, with libpq's environment defaults applied.

    libpq's own parser (through psycopg) reads the URL, so percent-encoding, ``?host=`` and
    multi-host lists are read as libpq reads them; a socket directory and the loopback names
    count as one local host, since the guard must not be dodged by spelling ``localhost`` as
    ``127.0.0.1``.
    """
    import os

    from psycopg.conninfo import conninfo_to_dict

    from safemig.pgurl import libpq_url

    params = conninfo_to_dict(libpq_url(url))
    host = str(params.get("host") or os.environ.get("PGHOST", ""))
    host = "local" if host.startswith("/") or host in _LOCAL_HOSTS else host.lower()
    port = str(params.get("port") or os.environ.get("PGPORT", "5432"))
    user = str(params.get("user") or os.environ.get("PGUSER", ""))
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE", "") or user)
    return host, port, dbname


def same_database(a: str, b: str) -> bool:
    """Do two URLs name the same database (same host, port and database name, as libpq reads them)?

    A false "no" would let a restore into a protected env's database skip its guard, so equal
    addresses are judged the same whatever the user or the other parameters say.
    """
    import psycopg

    from safemig.errors import ConfigError

    try:
        return _address(a) == _address(b)
    except (psycopg.Error, ConfigError):  # an unreadable URL: the connection reports it; compare the text
        return a == b
