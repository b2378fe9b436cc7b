"""`safemig lint`, `safemig rules`, `safemig explain`: the command layer over :mod:`safemig.lint`.

This module only parses options, calls the library and prints through
:mod:`safemig.output`. Everything heavy (sqlglot, pglast, and psycopg for ``--pending``)
is imported inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from safemig.commands.common import ConfigOption, DatabaseUrlOption, EnvOption, SourceOption, load

FormatOption = Annotated[
    str,
    typer.Option("--format", "-f", help="Output format: text, json, github (workflow annotations) or sarif (SARIF 2.1.0).",
                 case_sensitive=False),
]


def register(app: typer.Typer) -> None:
    """Add ``lint``, ``rules`` and ``explain`` to the root app."""
    app.command("lint")(lint_command)
    app.command("rules")(rules_command)
    app.command("explain")(explain_command)


def _pending_paths(config, env: str | None, database_url: str | None) -> list[Path]:
    """The migrations not yet applied in the env's database (and their rollback scripts come along)."""
    from safemig.config import resolve_database_url
    from safemig.db import connect
    from safemig.migrations import ledger
    from safemig.migrations.files import discover

    url = resolve_database_url(config, env=env, database_url=database_url)
    migrations = discover(config.migrations_dir)
    with connect(url) as conn:
        rows = ledger.applied_rows(conn)
    return [s.migration.path for s in ledger.states(migrations, rows)
            if s.migration is not None and s.state in ("pending", "out_of_order")]


def lint_command(
    paths: Annotated[Optional[List[Path]], typer.Argument(help="SQL files or directories (every *.sql below, recursively). Default: the migrations directory.", show_default=False)] = None,
    fmt: FormatOption = "text",
    pending: Annotated[bool, typer.Option("--pending", help="Only migrations not yet applied in --env's database (reads _sqlx_migrations).")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore and do not update the result cache (.safemig/lint-cache).")] = False,
    config_path: ConfigOption = None,
    env: EnvOption = None,
    database_url: DatabaseUrlOption = None,
    source: SourceOption = None,
) -> int:
    """Review migration SQL for dangerous operations. Exit 0: no errors; 1: at least one error finding; 2: usage or config error."""
    from safemig import output
    from safemig.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
    from safemig.lint.engine import lint_paths
    from safemig.lint.registry import all_rules
    from safemig.lint.render import FORMATS, render

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}", hint="e.g. --format json")
    config = load(config_path, source)
    if pending:
        if paths:
            raise UsageError("give either PATH arguments or --pending, not both", hint="--pending picks the files itself")
        if not env and not database_url:
            raise UsageError("--pending needs --env NAME (or --database-url)", hint="e.g. safemig lint --pending --env prod")
        targets = _pending_paths(config, env, database_url)
        if not targets:
            output.echo("no pending migrations", err=True)
            return EXIT_OK
    else:
        targets = list(paths) if paths else [config.migrations_dir]
        if not paths and not config.migrations_dir.is_dir():
            raise UsageError(f"migrations directory {config.migrations_dir} does not exist",
                             hint="pass files or directories, set migrations_dir in safemig.toml, or use --source DIR")
    report = lint_paths(targets, config, use_cache=not no_cache)
    rules = []
    if fmt == "sarif":
        from safemig.lint.policy import load_policy

        rules = all_rules(load_policy(config).house_dir)
    output.plain(render(report, rules, fmt, color=fmt == "text" and output.color_enabled()))
    return EXIT_CHECK_FAILED if report.has_errors else EXIT_OK


def rules_command(config_path: ConfigOption = None) -> None:
    """List every rule: id, default severity (after this repository's policy), one line."""
    from safemig import output
    from safemig.lint.policy import load_policy
    from safemig.lint.registry import all_rules

    config = load(config_path)
    policy = load_policy(config)
    rules = all_rules(policy.house_dir)
    width = max(len(r.id) for r in rules)
    for rule in rules:
        severity = policy.severities.get(rule.id, rule.severity)
        origin = "" if rule.builtin else "  (house rule)"
        output.echo(f"{rule.id:<{width}}  {severity:<7}  {rule.summary}{origin}")


def explain_command(
    rule_id: Annotated[str, typer.Argument(metavar="RULE", help="A rule id, as listed by `safemig rules`.")],
    config_path: ConfigOption = None,
) -> None:
    """Explain a rule: what it flags, why, a bad example and a good one."""
    from safemig import output
    from safemig.lint.policy import load_policy
    from safemig.lint.registry import all_rules, find_rule

    config = load(config_path)
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
