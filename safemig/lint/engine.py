"""Lint SQL files: find them, parse them, run every enabled rule, apply ignores, cache the result.

The public entry point is :func:`lint_paths` (``safemig deploy`` calls it directly).
Files whose results are cached (same bytes, same rollback script, same rule set and
policy) are not parsed at all, so neither sqlglot nor pglast is imported for them;
the others are linted in parallel on every core when there are enough of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from safemig.config import Config
from safemig.errors import MigrationFileError, UsageError
from safemig.lint import ignores as ignore_mod
from safemig.lint.cache import Cache
from safemig.lint.context import MIGRATION, ROLLBACK, LintFile, sql_names_in
from safemig.lint.finding import OFF, Finding, LintReport
from safemig.lint.policy import Policy, load_policy
from safemig.lint.registry import Rule, all_rules
from safemig.migrations.files import NO_TRANSACTION_MARKER, find_rollback_script, parse_name, read_sql

PARALLEL_THRESHOLD = 24  # below this many files to parse, a process pool costs more than it saves
_DIESEL_DIR = re.compile(r"^(?P<version>\d+)_(?P<description>.+)$")


@dataclass(frozen=True)
class Target:
    """A file to lint and what it is: a migration (with its version) or a rollback script."""

    path: Path
    role: str
    version: int | None
    description: str
    rollback: Path | None
    name_problem: str | None = None  # why the file name is not a valid migration name


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as editors and CI expect)."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def expand(paths: list[Path]) -> list[Path]:
    """Files as given, and every ``*.sql`` below each directory (recursively), without duplicates."""
    out: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*.sql")):
                if found.is_file():
                    out[found.resolve()] = None
        elif path.is_file():
            out[path.resolve()] = None
        else:
            raise UsageError(f"{path}: no such file or directory", hint="pass SQL files or directories of migrations")
    return list(out)


def _is_rollback(path: Path, config: Config) -> bool:
    if path.name == "down.sql" or path.name.endswith(".down.sql"):
        return True
    return config.rollbacks_dir in path.parents or any(p.name == "rollbacks" for p in path.parents)


def classify_target(path: Path, config: Config) -> Target:
    """Decide whether ``path`` is a migration or a rollback script, and find its version and rollback."""
    if _is_rollback(path, config):
        return Target(path, ROLLBACK, None, "", None)
    name = path.name
    if name == "up.sql":  # Diesel layout: <version>_<name>/up.sql with down.sql beside it
        match = _DIESEL_DIR.match(path.parent.name)
        down = path.with_name("down.sql")
        if not match:
            return Target(path, MIGRATION, None, "", down if down.is_file() else None,
                          f"directory {path.parent.name!r} has no <VERSION>_<name> form")
        return Target(path, MIGRATION, int(match["version"]), match["description"].replace("_", " "),
                      down if down.is_file() else None)
    try:
        parsed = parse_name(name)
    except MigrationFileError as exc:
        return Target(path, MIGRATION, None, "", None, exc.message)
    assert parsed is not None  # expand() only yields .sql files
    version, description, kind = parsed
    rollback = None
    if kind == "up":
        down = path.with_name(name[: -len(".up.sql")] + ".down.sql")
        rollback = down if down.is_file() else None
    if rollback is None:
        for directory in (config.rollbacks_dir, path.parent / "rollbacks"):
            try:
                rollback = find_rollback_script(version, directory)
            except MigrationFileError:
                rollback = None
            if rollback is not None:
                break
    return Target(path, MIGRATION, version, description, rollback)


def _rollback_candidates(version: int, config: Config, directory: Path) -> str | None:
    """The ambiguity error for a version with several rollback scripts, if any."""
    for folder in (config.rollbacks_dir, directory / "rollbacks"):
        try:
            find_rollback_script(version, folder)
        except MigrationFileError as exc:
            return exc.message
    return None


def build_file(target: Target, config: Config, text: str) -> LintFile:
    """Parse ``target`` (and its rollback script) into the :class:`LintFile` rules receive."""
    from safemig.lint.parse import parse_sql

    parsed = parse_sql(text)
    lint_file = LintFile(
        path=target.path, display=display_path(target.path), role=target.role, parsed=parsed,
        version=target.version, description=target.description,
        no_transaction=text.startswith(NO_TRANSACTION_MARKER), rollback_path=target.rollback,
        siblings=list(sql_names_in(target.path.parent)) if target.role == MIGRATION else [],
        name_problem=target.name_problem,
    )
    if target.role == MIGRATION and target.version is not None:
        lint_file.rollback_error = _rollback_candidates(target.version, config, target.path.parent)
    if target.rollback is not None:
        try:
            lint_file.rollback = parse_sql(read_sql(target.rollback)[1])
        except MigrationFileError as exc:
            lint_file.rollback_error = exc.message
    return lint_file


def run_rules(lint_file: LintFile, rules: list[Rule], policy: Policy) -> list[Finding]:
    """Every finding of the enabled rules on one file, minus what its ignore directives silence."""
    statement_lines = [(s.line, s.end_line) for s in lint_file.statements]
    lint_file.ignores = ignore_mod.parse_ignores(lint_file.parsed.comments, statement_lines)
    lint_file.known_rules = {r.id for r in rules}
    severities = {}
    for rule in rules:
        if rule.files == "migrations" and lint_file.role != MIGRATION:
            continue
        severity = policy.severity(rule.id, rule.severity, lint_file.path)
        if severity != OFF:
            severities[rule.id] = severity
    lint_file.enabled_rules = set(severities)
    findings = []
    last = [r for r in rules if getattr(r.module, "RUNS_LAST", False)]
    for rule in [r for r in rules if r not in last] + last:
        if rule.id not in severities:
            continue
        for v in rule.check(lint_file):
            index = ignore_mod.statement_at(v.line, statement_lines)
            if rule.id not in ("unused-ignore", "invalid-ignore") and ignore_mod.is_silenced(lint_file.ignores, rule.id, index):
                continue
            findings.append(Finding(lint_file.display, v.line, v.column, rule.id, severities[rule.id],
                                    v.message, v.hint, v.statement))
    return findings


# --- parallel execution -------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(config: Config) -> None:
    policy = load_policy(config)
    _WORKER.update(config=config, policy=policy, rules=all_rules(policy.house_dir))


def _worker_lint(job: tuple[Target, str]) -> list[Finding]:
    target, text = job
    return run_rules(build_file(target, _WORKER["config"], text), _WORKER["rules"], _WORKER["policy"])


def _lint_many(jobs: list[tuple[Target, str]], config: Config, policy: Policy, rules: list[Rule]) -> list[list[Finding]]:
    workers = min(os.cpu_count() or 1, max(1, len(jobs) // (PARALLEL_THRESHOLD // 2)))
    if len(jobs) < PARALLEL_THRESHOLD or workers < 2:
        return [run_rules(build_file(t, config, text), rules, policy) for t, text in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    _WORKER.update(config=config, policy=policy, rules=rules)  # inherited by forked workers
    initializer, initargs = (None, ()) if context.get_start_method() == "fork" else (_worker_init, (config,))
    chunk = max(1, len(jobs) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        return list(pool.map(_worker_lint, jobs, chunksize=chunk))


# --- public API -----------------------------------------------------------------------------------

def lint_paths(paths: list[Path], config: Config, *, use_cache: bool = True) -> LintReport:
    """Lint SQL files and directories (recursively ``*.sql``) and the rollback scripts of the migrations.

    Migrations get every rule; rollback scripts (``rollbacks/``, ``*.down.sql``, Diesel
    ``down.sql``) get every rule except those marked ``FILES = "migrations"`` (file
    naming, DROP-needs-rollback). Raises :class:`~safemig.errors.UsageError` for a path
    that does not exist and :class:`~safemig.errors.ConfigError` for a bad policy.
    """
    policy = load_policy(config)
    rules = all_rules(policy.house_dir)
    policy.check_rule_ids({r.id for r in rules})
    sql_names_in.cache_clear()
    files = expand(paths)
    targets = [classify_target(p, config) for p in files]
    seen = set(files)
    for target in list(targets):  # the rollback scripts of the migrations come along
        if target.rollback is not None and target.rollback.resolve() not in seen:
            seen.add(target.rollback.resolve())
            targets.append(Target(target.rollback.resolve(), ROLLBACK, None, "", None))
    cache = Cache.for_run(config.root, rules, policy) if use_cache else None
    results: dict[int, list[Finding]] = {}
    misses: list[tuple[int, Target, str, str | None]] = []
    for index, target in enumerate(targets):
        raw, text = read_sql(target.path)
        key = cache.key(target, raw, display_path(target.path)) if cache else None
        cached = cache.get(key) if cache and key else None
        if cached is not None:
            results[index] = cached
        else:
            misses.append((index, target, text, key))
    linted = _lint_many([(t, text) for _, t, text, _ in misses], config, policy, rules)
    for (index, _, _, key), findings in zip(misses, linted):
        results[index] = findings
        if cache and key:
            cache.put(key, findings)
    findings = sorted((f for i in range(len(targets)) for f in results[i]), key=lambda f: f.sort_key)
    return LintReport(findings=findings, files=[display_path(t.path) for t in targets])


def lint_text(text: str, config: Config, path: Path | None = None) -> LintReport:
    """Lint SQL given as text (as if it were the migration at ``path``): for tests and editors."""
    policy = load_policy(config)
    rules = all_rules(policy.house_dir)
    path = path or (config.migrations_dir / "999_stdin.sql")
    target = classify_target(path, config)
    findings = run_rules(build_file(target, config, text), rules, policy)
    return LintReport(findings=sorted(findings, key=lambda f: f.sort_key), files=[display_path(path)])
