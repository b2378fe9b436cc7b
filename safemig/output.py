"""The one module that writes to the terminal.

Library modules return values and raise errors; the command layer hands what should
be shown to these functions. Rich is imported lazily (``safemig lint`` as a pre-commit
hook must start fast), colour is off when the stream is not a TTY or ``NO_COLOR`` is
set, and every string passes through :func:`safemig.redact.redact` on the way out so
no secret reaches the terminal or a CI log.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from safemig.redact import redact, redact_data

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from safemig.errors import SafemigError


def color_enabled(stream: Any = None) -> bool:
    """True when ``stream`` is a terminal and neither ``NO_COLOR`` nor ``CI`` says otherwise."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@lru_cache(maxsize=2)
def _console(stderr: bool) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    enabled = color_enabled(stream)
    return Console(
        stderr=stderr,
        no_color=not enabled,
        force_terminal=True if os.environ.get("FORCE_COLOR") else None,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def console(stderr: bool = False) -> Console:
    """The shared Rich console for stdout (or stderr): for progress bars and tables."""
    return _console(stderr)


def reset() -> None:
    """Forget cached consoles (tests swap sys.stdout between invocations)."""
    _console.cache_clear()


def echo(text: str = "", *, err: bool = False, style: str | None = None) -> None:
    """Print one line (redacted). ``style`` is a Rich style used only when colour is on."""
    stream = sys.stderr if err else sys.stdout
    line = redact(text)
    if style and color_enabled(stream):
        from rich.markup import escape

        console(err).print(f"[{style}]{escape(line)}[/]")
    else:
        stream.write(line + "\n")
        stream.flush()


def plain(text: str, *, err: bool = False) -> None:
    """Write ``text`` exactly (redacted, no newline added): for machine-readable output."""
    stream = sys.stderr if err else sys.stdout
    stream.write(redact(text))
    stream.flush()


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout (its strings redacted before serialising: always valid JSON)."""
    sys.stdout.write(
        json.dumps(redact_data(data), indent=2, default=lambda o: redact(str(o)), ensure_ascii=False) + "\n"
    )
    sys.stdout.flush()


def success(text: str) -> None:
    echo(text, style="green")


def warn(text: str) -> None:
    echo(f"warning: {text}", err=True, style="yellow")


def error(exc: SafemigError) -> None:
    """Render a user-facing error: one line, then the hint; on stderr, never a traceback."""
    echo(f"error: {exc.message}", err=True, style="bold red")
    if exc.hint:
        echo(f"hint: {exc.hint}", err=True, style="cyan")
