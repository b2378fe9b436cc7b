"""The ``safemig`` command line: a thin Typer layer over the library.

Exit codes: 0 success; 1 a check said no (lint errors, a refused gate, a modified
migration, a failed migration); 2 usage, configuration or input error; 3 an external
system failed (database, S3, pg_dump); 130 interrupted; 70 an unexpected internal error
(a bug: the redacted traceback is written to a log file whose path is printed).
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
    "3 an external system failed (database, S3, pg_dump); 130 interrupted."
)


def build_app() -> typer.Typer:
    """The root Typer app with every area's commands registered.

    Built per call rather than at import, so that the commit-hook path (``safemig lint
    FILE``, see :func:`run`) never imports Typer at all.
    """
    import typer

    app = typer.Typer(
        name="safemig",
        help="Production-safety orchestrator for PostgreSQL schema migrations (SQLx-compatible).\n\n" + EXIT_CODES_HELP,
        no_args_is_help=True,
        add_completion=False,
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

    from safemig.commands import backup, deploy, lint, migrate

    for module in (migrate, lint, backup, deploy):
        module.register(app)
    return app


def _write_crash_log(exc: BaseException) -> str:
    import tempfile
    import traceback

    from safemig.redact import redact

    text = redact("".join(traceback.format_exception(exc)))
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
        app = build_app()
        result = app(args=args, prog_name="safemig", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C inside a command into Exit(130)
            output.echo("interrupted", err=True)
        return code
    except SafemigError as exc:
        output.error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        output.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:
        return _handle_framework_or_bug(exc)


def _handle_framework_or_bug(exc: Exception) -> int:
    """Typer/click's own exits and usage errors keep their codes; anything else is a bug."""
    import typer

    from safemig import output
    from safemig.errors import EXIT_INTERRUPTED
    from safemig.redact import redact

    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, typer.Abort):
        output.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, _click_exception_class()):
        exc.show()  # type: ignore[attr-defined]
        return exc.exit_code  # type: ignore[attr-defined]
    path = _write_crash_log(exc)
    output.echo(f"internal error: {redact(type(exc).__name__ + ': ' + str(exc))}", err=True)
    output.echo(f"hint: this is a bug in safemig; the traceback is in {path}", err=True)
    return 70


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
