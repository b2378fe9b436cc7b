"""`safemig lint`, `safemig rules`, `safemig explain`: the command layer over :mod:`safemig.lint`.

This module only parses options, calls the library and prints through
:mod:`safemig.output`. Everything heavy (sqlglot, pglast, psycopg for ``--pending``,
and Typer itself) is imported inside the functions that need it, so :func:`fast_main`
(the commit-hook path) loads none of what it does not use.
"""

import os
from pathlib import Path

from safemig.config import load_config


def register(app) -> None:
    """Add ``lint``, ``rules`` and ``explain`` to the root app."""
    from typing import Annotated

    import typer

    from safemig.commands.common import ConfigOption, DatabaseUrlOption, EnvOption, SourceOption

    FormatOption = Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="Output format: text, json, github (workflow annotations) or sarif (SARIF 2.1.0).",
            case_sensitive=False,
        ),
    ]

    def lint_command(
        paths: Annotated[
            list[Path] | None,
            typer.Argument(
                help="SQL files or directories (every *.sql below, recursively). Default: the migrations directory.",
                show_default=False,
            ),
        ] = None,
        fmt: FormatOption = "text",
        pending: Annotated[
            bool,
            typer.Option(
                "--pending", help="Only migrations not yet applied in --env's database (reads _sqlx_migrations)."
            ),
        ] = False,
        no_cache: Annotated[
            bool, typer.Option("--no-cache", help="Ignore and do not update the result cache (.safemig/lint-cache).")
        ] = False,
        hook: Annotated[
            bool,
            typer.Option(
                "--hook",
                help="Skip files outside the configured migrations/rollbacks directories "
                "(what the pre-commit hook passes).",
            ),
        ] = False,
        config_path: ConfigOption = None,
        env: EnvOption = None,
        database_url: DatabaseUrlOption = None,
        source: SourceOption = None,
    ) -> int:
        """Review migration SQL for dangerous operations.

        Exit 0: no errors (warnings allowed); 1: at least one error finding; 2: usage or config error.
        """
        return run_lint(
            paths or [],
            fmt,
            no_cache=no_cache,
            config_path=config_path,
            source=source,
            pending=pending,
            env=env,
            database_url=database_url,
            hook=hook,
        )

    def rules_command(config_path: ConfigOption = None) -> None:
        """List every rule: id, severity (after this repository's policy), one line."""
        list_rules(config_path)

    def explain_command(
        rule_id: Annotated[str, typer.Argument(metavar="RULE", help="A rule id, as listed by `safemig rules`.")],
        config_path: ConfigOption = None,
    ) -> None:
        """Explain a rule: what it flags, why, a bad example and a good one."""
        explain_rule(rule_id, config_path)

    app.command("lint")(lint_command)
    app.command("rules")(rules_command)
    app.command("explain")(explain_command)


_FAST_OPTIONS = {"--format", "-f", "--no-cache", "--config", "-c", "--source", "--hook"}


def fast_main(argv: list[str]) -> int | None:
    """``safemig lint`` for the forms a commit hook and CI use, without importing Typer.

    Typer 0.29 imports pydantic and builds a validator for every option of every command
    (measured here: ~115 ms of the 150 ms commit-hook budget). The forms handled are
    ``PATH...``, ``--format/-f``, ``--no-cache``, ``--config/-c`` and ``--source``, parsed
    with the standard library's argparse. Anything else (``--help``, ``--pending``,
    ``--env``, a typo) returns ``None``: the Typer CLI then handles it, with its help and errors.
    """
    import argparse

    if any(a.startswith("-") and a.split("=", 1)[0] not in _FAST_OPTIONS for a in argv if a != "-"):
        return None
    parser = argparse.ArgumentParser(prog="safemig lint", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--format", "-f", dest="fmt", default="text")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--config", "-c", type=Path, default=os.environ.get("SAFEMIG_CONFIG") or None)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--hook", action="store_true")
    try:
        args, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError:
        return None
    if unknown:
        return None
    return run_lint(
        args.paths, args.fmt, no_cache=args.no_cache, config_path=args.config, source=args.source, hook=args.hook
    )


def _pending_paths(config, env: str | None, database_url: str | None) -> tuple[list[Path], int]:
    """The migrations not yet applied in the env's database (their rollback scripts come along), and the
    server's major version (the default target of the version checks)."""
    from safemig.config import resolve_database_url
    from safemig.db import connect
    from safemig.migrations import ledger
    from safemig.migrations.files import discover

    url = resolve_database_url(config, env=env, database_url=database_url)
    migrations = discover(config.migrations_dir, ignored_chars=config.sqlx.ignored_chars)
    with connect(url) as conn:
        rows = ledger.applied_rows(conn, config.sqlx.table)
        major = conn.info.server_version // 10000
    paths = [
        s.migration.path
        for s in ledger.states(migrations, rows)
        if s.migration is not None and s.state in ("pending", "out_of_order")
    ]
    return paths, major


def nearest_config(path: Path) -> Path | None:
    """The ``safemig.toml`` closest above ``path`` (a file or a directory), if any: in a monorepo each
    service's migrations are judged by that service's configuration."""
    from safemig.config import CONFIG_FILE_NAME

    directory = path.resolve()
    if not directory.is_dir():
        directory = directory.parent
    for candidate in (directory, *directory.parents):
        if (candidate / CONFIG_FILE_NAME).is_file():
            return candidate / CONFIG_FILE_NAME
    return None


def _groups(paths: list[Path], config_path: Path | None, source: Path | None):
    """``[(config, paths)]``: one group per nearest ``safemig.toml`` unless ``--config``/``--source`` names one."""
    if config_path is not None or source is not None or not paths:
        return [(load_config(config_path, source=source, check_envs=False), list(paths))]
    by_config: dict[Path | None, list[Path]] = {}
    for path in paths:
        by_config.setdefault(nearest_config(path) if path.exists() else None, []).append(path)
    return [(load_config(found, check_envs=False), group) for found, group in by_config.items()]


def _configured(path: Path, config) -> bool:
    """True when ``path`` lies in the configured migrations or rollbacks directory (the hook's filter)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(d) for d in (config.migrations_dir, config.rollbacks_dir))


def run_lint(
    paths: list[Path],
    fmt: str,
    *,
    no_cache: bool = False,
    config_path: Path | None = None,
    source: Path | None = None,
    pending: bool = False,
    env: str | None = None,
    database_url: str | None = None,
    hook: bool = False,
) -> int:
    """Lint, print the report in ``fmt``, return the exit code (0 clean or warnings only, 1 errors).

    Each path is judged by the ``safemig.toml`` nearest above it (unless ``--config`` or
    ``--source`` is given). With ``hook`` (the pre-commit hook), files outside their
    config's migrations and rollbacks directories are skipped: the hook hands over every
    SQL file of a commit and safemig decides by its configuration which are migrations.
    """
    from safemig import output
    from safemig.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
    from safemig.lint.engine import lint_paths
    from safemig.lint.finding import LintReport
    from safemig.lint.registry import all_rules
    from safemig.lint.render import FORMATS, render

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}", hint="e.g. --format json")
    config = load_config(config_path, source=source, check_envs=False)  # env values: checked if an env is used
    server_major = None
    if pending:
        if paths:
            raise UsageError(
                "give either PATH arguments or --pending, not both", hint="--pending picks the files itself"
            )
        if not env and not database_url:
            raise UsageError(
                "--pending needs --env NAME (or --database-url)", hint="e.g. safemig lint --pending --env prod"
            )
        targets, server_major = _pending_paths(config, env, database_url)
        if not targets:
            output.echo("no pending migrations", err=True)
            return EXIT_OK
    else:
        targets = list(paths) if paths else [config.migrations_dir]
        if not paths and not config.migrations_dir.is_dir():
            raise UsageError(
                f"migrations directory {config.migrations_dir} does not exist",
                hint="pass files or directories, set migrations_dir in safemig.toml, or use --source DIR",
            )
    groups = [(config, targets)] if pending or not paths else _groups(targets, config_path, source)
    report = LintReport()
    for group_config, group_paths in groups:
        if hook:
            group_paths = [p for p in group_paths if p.is_dir() or _configured(p, group_config)]
            if not group_paths:
                continue
        part = lint_paths(group_paths, group_config, use_cache=not no_cache, env=env, server_major=server_major)
        report.findings.extend(part.findings)
        report.files.extend(part.files)
        report.notes.extend(n for n in part.notes if n not in report.notes)
    if len(groups) > 1:
        report.findings.sort(key=lambda f: f.sort_key)
    rules = []
    docs_url = None
    if fmt == "sarif":
        from safemig.lint.policy import load_policy

        policy = load_policy(config)
        rules, docs_url = all_rules(policy.house_dir), policy.rule_docs_url
    output.plain(render(report, rules, fmt, color=fmt == "text" and output.color_enabled(), rule_docs_url=docs_url))
    for note in report.notes:
        output.echo(f"note: {note}", err=True)
    return EXIT_CHECK_FAILED if report.has_errors else EXIT_OK


def list_rules(config_path: Path | None) -> None:
    """Print every rule: id, severity (after this repository's policy), one line."""
    from safemig import output
    from safemig.lint.policy import load_policy
    from safemig.lint.registry import all_rules

    config = load_config(config_path)
    policy = load_policy(config)
    rules = all_rules(policy.house_dir)
    width = max(len(r.id) for r in rules)
    for rule in rules:
        severity = policy.severities.get(rule.id, rule.severity)
        origin = "" if rule.builtin else "  (house rule)"
        output.echo(f"{rule.id:<{width}}  {severity:<7}  {rule.summary}{origin}")


def explain_rule(rule_id: str, config_path: Path | None) -> None:
    """Print a rule's explanation: what it flags, why, a bad example and a good one."""
    from safemig import output
    from safemig.lint.policy import load_policy
    from safemig.lint.registry import all_rules, find_rule

    config = load_config(config_path)
    rule = find_rule(all_rules(load_policy(config).house_dir), rule_id)
    doc = rule.doc
    output.echo(f"{rule.id} ({rule.severity}){'' if rule.builtin else ' - house rule'}")
    output.echo("")
    output.echo(doc["intro"])
    for section in ("Why", "Bad", "Good"):
        output.echo("")
        output.echo(f"{section}:")
        for line in doc[section].splitlines():
            output.echo(f"    {line}" if line else "")
    output.echo("")
    output.echo(f"Silence one statement: -- safemig:ignore {rule.id} -- <reason>")
