"""The ``safemig`` command line: a thin Typer layer over the library.

Exit codes: 0 success; 1 a check said no (lint errors, a refused gate, a modified
migration, a failed migration); 2 usage, configuration or input error; 3 an external
system failed (database, S3, pg_dump); 130 interrupted; 70 an unexpected internal error
(a bug: the redacted traceback is written to a log file whose path is printed).

``SAFEMIG_DEBUG=1`` also prints, redacted, the whole chained traceback of any error, the
user-facing ones included (their underlying exception is what a bug report needs).
Shell completion is Typer's (``safemig --install-completion`` / ``--show-completion``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from safemig import __version__

if TYPE_CHECKING:  # pragma: no cover
    import typer

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 a check said no (lint errors, a gate refused, an applied "
    "migration was modified, a migration failed); 2 usage, configuration or input error; "
    "3 an external system failed (database, S3, pg_dump); 130 interrupted; 70 an internal error "
    "(a bug: a crash log is written). SAFEMIG_DEBUG=1 prints the full traceback of any error; "
    "NO_COLOR or TERM=dumb turn colour off."
)
DEBUG_VARIABLE = "SAFEMIG_DEBUG"
# The module of safemig.commands that registers each top-level command. `safemig restore ...`
# builds only its module's commands: Typer's conversion of every command into click's costs
# ~15 ms more at each start (measured), time a restore or backup waits before its first request.
# tests/test_cli.py checks that this map and what the modules register agree.
COMMAND_MODULES = {
    "migrate": "migrate",
    "lint": "lint",
    "rules": "lint",
    "explain": "lint",
    "backup": "backup",
    "backups": "backup",
    "restore": "backup",
    "deploy": "deploy",
    "runbook": "deploy",
    "demo": "deploy",
}


def build_app(only: str | None = None) -> typer.Typer:
    """The root Typer app with every area's commands registered (``only``: just that module's).

    Built per call rather than at import, so that the commit-hook path (``safemig lint
    FILE``, see :func:`run`) never imports Typer at all.
    """
    import typer

    app = typer.Typer(
        name="safemig",
        help="Production-safety orchestrator for PostgreSQL schema migrations (SQLx-compatible).\n\n" + EXIT_CODES_HELP,
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def version_callback(value: bool) -> None:
        if value:
            typer.echo(f"safemig {__version__}")
            raise typer.Exit()

    @app.callback()
    def _root(
        # (default-value style: this module's annotations are strings resolved in its globals,
        # where Typer is deliberately absent)
        version: bool | None = typer.Option(
            None, "--version", "-V", callback=version_callback, is_eager=True, help="Show the version and exit."
        ),
    ) -> None:
        """Production-safety orchestrator for PostgreSQL schema migrations."""

    import importlib

    for name in ("migrate", "lint", "backup", "deploy"):
        if only is None or name == only:
            importlib.import_module(f"safemig.commands.{name}").register(app)
    return app


def chained_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and of every exception behind it, oldest first, as Python prints a chain.

    Unlike ``traceback.format_exception`` this also shows the context that ``raise ... from None``
    hides: a user-facing error is often raised that way from the psycopg, botocore or OSError
    exception that explains it, and that is what ``SAFEMIG_DEBUG=1`` is for.
    """
    import traceback

    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    oldest_first = chain[::-1]
    parts = []
    for older, newer in zip(oldest_first, oldest_first[1:] + [None], strict=True):
        parts.append("".join(traceback.format_exception(older, chain=False)))
        if newer is not None:
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if newer.__cause__ is older
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
    return "".join(parts)


def _debug(exc: BaseException) -> None:
    """With ``SAFEMIG_DEBUG=1``: the chained traceback of ``exc`` on stderr, redacted."""
    import os

    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        from safemig import output

        output.failure(chained_traceback(exc).rstrip("\n"))


def _write_crash_log(exc: BaseException) -> str:
    import tempfile

    from safemig.redact import redact

    text = redact(chained_traceback(exc))
    fd, path = tempfile.mkstemp(prefix="safemig-crash-", suffix=".log")
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(f"safemig {__version__}\nargv: {redact(' '.join(sys.argv))}\n\n{text}")
    return path


def _click_exception_class() -> type[Exception]:
    """Click's usage-error base as Typer ships it (Typer vendors click in recent versions)."""
    import typer

    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting (tests call this).

    ``safemig lint`` in the forms a commit hook or CI uses goes straight to
    :func:`safemig.commands.lint.fast_main`, without Typer (~60 ms of start-up, measured).
    """
    from safemig import envfile, output
    from safemig.errors import EXIT_INTERRUPTED, SafemigError

    args = envfile.strip_flag(list(sys.argv[1:] if argv is None else argv))
    try:
        if args[:1] == ["lint"]:
            from safemig.commands.lint import fast_main

            code = fast_main(args[1:])
            if code is not None:
                return code

        envfile.load()  # .env, as sqlx-cli loads it (the commit-hook lint path above needs no env)
        app = build_app(COMMAND_MODULES.get(args[0]) if args else None)
        result = app(args=args, prog_name="safemig", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C inside a command into Exit(130)
            output.failure("interrupted")
        return code
    except SafemigError as exc:
        _debug(exc)
        output.error(exc)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _debug(exc)
        output.failure("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:
        return _handle_framework_or_bug(exc)


def _handle_framework_or_bug(exc: Exception) -> int:
    """Typer/click's own exits and usage errors keep their codes; anything else is a bug."""
    import typer

    from safemig import output
    from safemig.errors import EXIT_INTERNAL, EXIT_INTERRUPTED
    from safemig.redact import redact

    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, typer.Abort):
        output.failure("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, _click_exception_class()):
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    _debug(exc)
    path = _write_crash_log(exc)
    output.failure(f"internal error: {redact(type(exc).__name__ + ': ' + str(exc))}")
    output.failure(f"hint: this is a bug in safemig; the traceback is in {path}")
    return EXIT_INTERNAL


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
