"""Lint one file: parse it, run every enabled rule, apply its ignore directives; many files on every core.

Imported only when some file is not in the cache, since it brings in the parsers and the rules.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable

from safemig.config import Config
from safemig.errors import MigrationFileError
from safemig.lint import ignores as ignore_mod
from safemig.lint.context import LintFile
from safemig.lint.finding import OFF, Finding
from safemig.lint.policy import Policy
from safemig.lint.registry import Rule, all_rules
from safemig.lint.targets import MIGRATION, Target, display_path, rollback_ambiguity, sql_names_in
from safemig.migrations.files import NO_TRANSACTION_MARKER, read_sql

PARALLEL_THRESHOLD = 24  # below this many files to parse, a process pool costs more than it saves


_PARSED: dict[str, object] = {}  # text -> ParsedFile, the last few of this process (see _parse)
_PARSED_KEEP = 64


def _parse(text: str):
    """``parse_sql(text)``, remembered for the next few files: a rollback script is parsed as its
    migration's rollback and again as a file of its own, usually by the same worker right after
    (Diesel's ``down.sql`` beside ``up.sql``: a quarter of a real corpus's parses). Sharing one
    ParsedFile is safe: what is memoised per statement is a pure function of the statement."""
    from safemig.lint.parse import parse_sql

    found = _PARSED.get(text)
    if found is None:
        if len(_PARSED) >= _PARSED_KEEP:
            _PARSED.pop(next(iter(_PARSED)))
        found = _PARSED[text] = parse_sql(text)
    return found


def build_file(target: Target, config: Config, text: str, policy: Policy | None = None) -> LintFile:
    """Parse ``target`` (and its rollback script) into the :class:`LintFile` rules receive."""
    parsed = _parse(text)
    lint_file = LintFile(
        path=target.path,
        display=display_path(target.path),
        role=target.role,
        parsed=parsed,
        version=target.version,
        description=target.description,
        no_transaction=target.no_transaction or text.startswith(NO_TRANSACTION_MARKER),
        rollback_path=target.rollback,
        siblings=sql_names_in(target.path.parent) if target.role == MIGRATION else (),
        name_problem=target.name_problem,
    )
    if policy is not None:
        lint_file.pg_version = policy.target_major
        lint_file.runner_lock_timeout = policy.runner_lock_timeout
    if target.role == MIGRATION and target.version is not None:
        lint_file.rollback_error = rollback_ambiguity(target.version, config, target.path.parent)
    if target.rollback is not None:
        try:
            lint_file.rollback = _parse(read_sql(target.rollback)[1])
        except MigrationFileError as exc:
            lint_file.rollback_error = exc.message
    return lint_file


def _violations(rule: Rule, lint_file: LintFile) -> list:
    """A rule's violations; a crashing house rule is a configuration problem named precisely (exit 2).

    A crashing built-in rule is a bug in safemig and propagates (exit 70, with a crash log).
    """
    if rule.builtin:
        return list(rule.check(lint_file))
    try:
        return list(rule.check(lint_file))
    except Exception as exc:
        from safemig.errors import ConfigError

        raise ConfigError(
            f"house rule {rule.id} ({rule.source}) crashed on {lint_file.display}: {type(exc).__name__}: {exc}",
            hint='fix the rule module, or set it to "off" in the policy',
        ) from None


def run_rules(lint_file: LintFile, rules: list[Rule], policy: Policy) -> list[Finding]:
    """Every finding of the enabled rules on one file, minus what its ignore directives silence."""
    statement_lines = [(s.line, s.end_line) for s in lint_file.statements]
    parsed = lint_file.parsed
    lint_file.ignores = (
        ignore_mod.parse_ignores(parsed.comments, statement_lines)
        if ignore_mod.may_have_directives(parsed.text)
        else []
    )
    lint_file.known_rules = {r.id for r in rules}
    excepted = policy.excepted_rules(lint_file.path)
    severities = {}
    for rule in rules:
        if (rule.files == "migrations" and lint_file.role != MIGRATION) or rule.id in excepted:
            continue
        severity = policy.severities.get(rule.id, rule.severity)
        if severity != OFF:
            severities[rule.id] = severity
    lint_file.enabled_rules = set(severities)
    findings = []
    statement_at = ignore_mod.statement_finder(statement_lines)
    for rule in sorted(rules, key=lambda r: r.runs_last):  # unused-ignore judges after everyone else
        if rule.id not in severities:
            continue
        for v in _violations(rule, lint_file):
            index = statement_at(v.line)
            if rule.silenceable and ignore_mod.is_silenced(lint_file.ignores, rule.id, index):
                continue
            findings.append(
                Finding(
                    lint_file.display, v.line, v.column, rule.id, severities[rule.id], v.message, v.hint, v.statement
                )
            )
    return findings


# --- parallel execution -------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(config: Config, policy: Policy, gc_threshold: tuple[int, int, int]) -> None:
    import gc

    gc.set_threshold(*gc_threshold)  # as the parent runs (safemig.lint.engine._fewer_collections)
    _WORKER.update(config=config, policy=policy, rules=all_rules(policy.house_dir))


def _worker_lint(job: tuple[Target, str]) -> list[Finding]:
    target, text = job
    policy = _WORKER["policy"]
    return run_rules(build_file(target, _WORKER["config"], text, policy), _WORKER["rules"], policy)


def lint_many(
    jobs: Iterable[tuple[Target, str]],
    config: Config,
    policy: Policy,
    rules: list[Rule],
    *,
    expected: int,
    looked_at: Callable[[], int] | None = None,
) -> list[list[Finding]]:
    """The findings of every job, in order; on every core when there are enough jobs.

    ``jobs`` may be a generator (the engine yields files as it reads them and finds them
    missing from the cache): the workers start on the first chunk while the rest is
    still being read, instead of after. ``expected`` is the number of files the jobs come
    from and ``looked_at()`` how many of them the generator has gone through: together
    they estimate how many jobs there will be (a warm cache turns most files away), which
    sizes the chunks so that both workers get some.
    """
    jobs = iter(jobs)
    head = list(itertools.islice(jobs, PARALLEL_THRESHOLD))
    workers = min(os.cpu_count() or 1, max(1, expected // (PARALLEL_THRESHOLD // 2)))
    if len(head) < PARALLEL_THRESHOLD or workers < 2:  # a short head means the jobs ran out
        return [
            run_rules(build_file(t, config, text, policy), rules, policy) for t, text in itertools.chain(head, jobs)
        ]
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork is cheap (workers inherit the loaded rules) but unsafe once other threads exist
    # (a library caller such as `safemig deploy` may run some): then workers start fresh.
    fork = hasattr(os, "fork") and threading.active_count() == 1
    context = multiprocessing.get_context("fork" if fork else "spawn")
    _WORKER.update(config=config, policy=policy, rules=rules)  # inherited by forked workers
    if fork:
        import pglast.parser  # noqa: F401  (imported once here, not once per forked worker)
    initializer: Callable[..., None] | None = None if fork else _worker_init
    import gc

    initargs: tuple = () if fork else (config, policy, gc.get_threshold())
    estimate = expected if looked_at is None else expected * len(head) // max(looked_at(), len(head))
    chunk = max(1, min(estimate // (workers * 8), 32))  # small chunks: the first starts sooner, the last ends together
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        return list(pool.map(_worker_lint, itertools.chain(head, jobs), chunksize=chunk))
