"""The one module that writes to the terminal.

Library modules return values and raise errors; the command layer hands what should
be shown to these functions. Rich is imported lazily (``safemig lint`` as a pre-commit
hook must start fast), colour is off when the stream is not a TTY, ``NO_COLOR`` is set or
``TERM=dumb``, and every string passes through :func:`safemig.redact.redact` on the way out
so no secret reaches the terminal or a CI log.

``--quiet`` (:func:`set_quiet`) silences what :func:`echo` and :func:`success` say (progress
and summaries); warnings, errors and machine-readable output (:func:`plain`,
:func:`print_json`) are always written.
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


_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """``--quiet``: from now on, :func:`echo` and :func:`success` write nothing."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether ``--quiet`` was given (commands also skip progress bars then)."""
    return _quiet


def color_enabled(stream: Any = None) -> bool:
    """True when ``stream`` is a terminal and neither ``NO_COLOR`` nor ``TERM=dumb`` says otherwise."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
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
    """Forget cached consoles and ``--quiet`` (tests swap sys.stdout between invocations)."""
    _console.cache_clear()
    set_quiet(False)


def echo(text: str = "", *, err: bool = False, style: str | None = None) -> None:
    """Print one line (redacted), unless ``--quiet``. ``style`` is a Rich style used only when colour is on."""
    if _quiet:
        return
    _write_line(text, err=err, style=style)


def _write_line(text: str, *, err: bool, style: str | None) -> None:
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
    """A warning on stderr (also with ``--quiet``)."""
    _write_line(f"warning: {text}", err=True, style="yellow")


def error(exc: SafemigError) -> None:
    """Render a user-facing error: one line, then the hint; on stderr, never a traceback."""
    _write_line(f"error: {exc.message}", err=True, style="bold red")
    if exc.hint:
        _write_line(f"hint: {exc.hint}", err=True, style="cyan")


def prompt(text: str) -> str:
    """Ask on the terminal (stderr, redacted) and return what was typed; callers ask only when stdin is a TTY."""
    import click

    return str(click.prompt(redact(text), err=True, default="", show_default=False))


def failure(text: str) -> None:
    """A line about a failure that is not a :class:`SafemigError` (an internal error, an interrupt): always shown."""
    _write_line(text, err=True, style=None)
