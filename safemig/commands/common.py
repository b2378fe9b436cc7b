"""Options shared by every command, so ``--config``, ``--env``, ``--database-url`` and
``--source`` mean the same thing everywhere (sqlx-cli's names where it has one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safemig.config import Config, load_config

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: ./safemig.toml, else [tool.safemig] in ./pyproject.toml).",
        envvar="SAFEMIG_CONFIG",
        show_default=False,
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option("--env", "-e", help="Environment name from [envs.NAME] in the config.", show_default=False),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "-D",
        help="Database URL (default: the env's database_url, else $DATABASE_URL; "
        "libpq PG* variables and .pgpass work).",
        show_default=False,
    ),
]
SourceOption = Annotated[
    Path | None,
    typer.Option(
        "--source", help="Migrations directory (overrides migrations_dir; sqlx-cli's flag).", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _quiet(value: bool) -> bool:
    if value:
        from safemig import output

        output.set_quiet(True)
    return value


# Commands that print progress take ``quiet: QuietOption = False``; the option acts through its
# callback (the body need not look at it): progress lines and summaries are dropped, while
# warnings, errors and --json output are still written, and the exit code says how it went.
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", callback=_quiet, help="No progress or summary: only warnings, errors and --json output."
    ),
]


def load(config_path: Path | None, source: Path | None = None) -> Config:
    """The configuration, with ``--source`` applied over ``migrations_dir``."""
    return load_config(config_path, source=source)
