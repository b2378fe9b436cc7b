"""Read ``.env`` the way sqlx-cli does, so a stock sqlx repository needs no exported variables.

sqlx-cli calls ``dotenvy::dotenv()`` at start-up unless ``--no-dotenv`` is on the command
line (``sqlx-cli/src/lib.rs``, ``maybe_apply_dotenv``): the first ``.env`` found in the
current directory or one of its parents is loaded into the environment, and variables
already set win over the file. safemig does the same, through python-dotenv (a
well-kept library: quoting, escapes, ``export`` prefixes, multi-line values and
``${VAR}`` expansion are its job, not ours; it was already in the lock). One difference:
dotenvy also expands ``$VAR`` without braces, python-dotenv only ``${VAR}``.

The values go into ``os.environ`` (as with sqlx), so ``${VAR}`` in ``safemig.toml``,
libpq's ``PG*`` variables, pg_dump and boto3 all see them.
"""

from __future__ import annotations

import os
from pathlib import Path

NO_DOTENV_FLAG = "--no-dotenv"
_disabled = False


def strip_flag(args: list[str]) -> list[str]:
    """``args`` without sqlx's ``--no-dotenv`` (accepted anywhere, as sqlx-cli checks it before
    parsing); its presence turns :func:`load` off for this invocation."""
    global _disabled
    _disabled = NO_DOTENV_FLAG in args
    return [arg for arg in args if arg != NO_DOTENV_FLAG]


def find(start: Path | None = None) -> Path | None:
    """The ``.env`` sqlx would load: in ``start`` (the current directory) or its nearest parent."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / ".env"
        if candidate.is_file():
            return candidate
    return None


def load(start: Path | None = None) -> Path | None:
    """Load the nearest ``.env`` into ``os.environ`` without overriding what is set; return its path.

    Cheap enough to call from every entry point that needs the environment (it is one
    directory walk and a small parse), so no caching that would go stale across a
    changed working directory.
    """
    if _disabled or os.environ.get("SAFEMIG_NO_DOTENV"):
        return None
    path = find(start)
    if path is None:
        return None
    from dotenv import load_dotenv

    load_dotenv(path, override=False, interpolate=True, encoding="utf-8")
    return path
