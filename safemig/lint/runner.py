"""Lint one file: parse it, run every enabled rule, apply its ignore directives; many files on every core.

Imported only when some file is not in the cache, since it brings in the parsers and the rules.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from safemig.config import Config
from safemig.errors import MigrationFileError
from safemig.lint import ignores as ignore_mod
from safemig.lint.context import LintFile
from safemig.lint.finding import OFF, Finding
from safemig.lint.parse import use_orjson
from safemig.lint.policy import Policy
from safemig.lint.registry import Rule, all_rules
from safemig.lint.targets import MIGRATION, Target, display_path, rollback_ambiguity, sql_names_in
from safemig.migrations.files import NO_TRANSACTION_MARKER, read_sql

PARALLEL_THRESHOLD = 24  # below this many files to parse, a process pool costs more than it saves


def _parse(text: str):
    """``parse_sql(text)``, shared with the files parsed just before (:func:`safemig.lint.parse.parse_recent`)."""
    from safemig.lint.parse import parse_recent

    return parse_recent(text)


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


def _house_violations(rule: Rule, lint_file: LintFile) -> list:
    """A house rule's violations; a crashing house rule is a configuration problem named precisely (exit 2).

    A crashing built-in rule is a bug in safemig and propagates (exit 70, with a crash log).
    """
    try:
        return list(rule.check(lint_file))
    except Exception as exc:
        from safemig.errors import ConfigError

        raise ConfigError(
            f"house rule {rule.id} ({rule.source}) crashed on {lint_file.display}: {type(exc).__name__}: {exc}",
            hint='fix the rule module, or set it to "off" in the policy',
        ) from None


class _Plan:
    """What :func:`run_rules` decides once per run, not once per file: which rules apply to a role (and
    a set of path exceptions), at which severity, in which order (unused-ignore last)."""

    def __init__(self, rules: list[Rule], policy: Policy, role: str, excepted: frozenset[str]) -> None:
        self.rules, self.policy = rules, policy  # checked by identity: ids may be reused after a run
        self.known = {r.id for r in rules}
        self.severities: dict[str, str] = {}
        for rule in rules:
            if (rule.files == "migrations" and role != MIGRATION) or rule.id in excepted:
                continue
            severity = policy.severities.get(rule.id, rule.severity)
            if severity != OFF:
                self.severities[rule.id] = severity
        self.ordered = [r for r in sorted(rules, key=lambda r: r.runs_last) if r.id in self.severities]


_PLANS: dict[tuple[int, int, str, frozenset[str]], _Plan] = {}


def _plan(rules: list[Rule], policy: Policy, role: str, excepted: frozenset[str]) -> _Plan:
    key = (id(rules), id(policy), role, excepted)
    plan = _PLANS.get(key)
    if plan is None or plan.rules is not rules or plan.policy is not policy:
        if len(_PLANS) > 64:  # a long-lived caller (an editor's lint_text) makes new rule lists
            _PLANS.clear()
        plan = _PLANS[key] = _Plan(rules, policy, role, excepted)
    return plan


def _row(*fields):
    return fields


def run_rules(lint_file: LintFile, rules: list[Rule], policy: Policy, make: Callable = Finding) -> list:
    """Every finding of the enabled rules on one file, minus what its ignore directives silence.

    ``make`` builds each one from its fields: :class:`Finding`, or in a worker a plain row
    (``Finding(*row)`` in the main process): building a frozen dataclass twice per finding, and
    taking it apart in between for pickling, cost more than the rows.
    """
    parsed = lint_file.parsed
    statement_lines = [(s.line, s.end_line) for s in lint_file.statements]
    lint_file.ignores = (
        ignore_mod.parse_ignores(parsed.comments, statement_lines)
        if ignore_mod.may_have_directives(parsed.text)
        else []
    )
    plan = _plan(rules, policy, lint_file.role, frozenset(policy.excepted_rules(lint_file.path)))
    severities = plan.severities
    lint_file.known_rules = set(plan.known)
    lint_file.enabled_rules = set(severities)
    findings = []
    statement_at = ignore_mod.statement_finder(statement_lines)
    kinds = {s.node_type for s in lint_file.valid_statements}
    display = lint_file.display
    for rule in plan.ordered:
        if rule.kinds is not None and kinds.isdisjoint(rule.kinds):
            continue
        rule_id, severity = rule.id, severities[rule.id]
        for v in rule.module.check(lint_file) if rule.builtin else _house_violations(rule, lint_file):
            if rule.silenceable and lint_file.ignores and ignore_mod.is_silenced(
                lint_file.ignores, rule_id, statement_at(v.line)
            ):
                continue
            findings.append(make(display, v.line, v.column, rule_id, severity, v.message, v.hint, v.statement))
    return findings


def lint_one(
    target: Target, config: Config, text: str, policy: Policy, rules: list[Rule], make: Callable = Finding
) -> tuple[list, bool]:
    """The findings of one file (built by ``make``, see :func:`run_rules`), and whether a rule read the
    directory's earlier migrations for them (:func:`safemig.lint.history.consulted`: the cache then
    keeps a digest of those with them)."""
    import sys

    findings = run_rules(build_file(target, config, text, policy), rules, policy, make)
    history = sys.modules.get("safemig.lint.history")  # imported by the first rule that asks
    return findings, history is not None and history.consulted(target.path)


# --- parallel execution -------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(config: Config, policy: Policy) -> None:
    import gc

    use_orjson()
    gc.disable()  # as the parent runs (safemig.lint.engine._fewer_collections)
    _WORKER.update(config=config, policy=policy, rules=all_rules(policy.house_dir))


def _job(target: Target, text: str) -> tuple:
    """A job as plain values: pickling the Target dataclass and its Paths cost more than linting small files."""
    rollback = str(target.rollback) if target.rollback is not None else None
    return (str(target.path), target.role, target.version, target.description, rollback, target.name_problem,
            target.no_transaction, text)  # fmt: skip


def _worker_lint(job: tuple) -> tuple[list[tuple], bool]:
    """Lint one job in a worker; the findings go back as rows (``Finding(*row)``), cheaper to pickle."""
    path, role, version, description, rollback, name_problem, no_transaction, text = job
    target = Target(
        Path(path), role, version, description, Path(rollback) if rollback else None, name_problem, no_transaction
    )
    return lint_one(target, _WORKER["config"], text, _WORKER["policy"], _WORKER["rules"], _row)


def lint_many(
    jobs: Iterable[tuple[Target, str]],
    config: Config,
    policy: Policy,
    rules: list[Rule],
    *,
    expected: int,
    looked_at: Callable[[], int] | None = None,
) -> list[tuple[list[Finding], bool]]:
    """The findings of every job, in order (with :func:`lint_one`'s history flag); on every core when
    there are enough jobs.

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
        return [lint_one(t, config, text, policy, rules) for t, text in itertools.chain(head, jobs)]
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork is cheap (workers inherit the loaded rules) but unsafe once other threads exist
    # (a library caller such as `safemig deploy` may run some): then workers start fresh.
    fork = hasattr(os, "fork") and threading.active_count() == 1
    context = multiprocessing.get_context("fork" if fork else "spawn")
    _WORKER.update(config=config, policy=policy, rules=rules)  # inherited by forked workers
    use_orjson()  # enough files to repay its import (inherited by forked workers too)
    if fork:  # what every worker would otherwise import or read on its own, once here for all of them
        import pglast.parser  # noqa: F401

        from safemig.lint import catalog, history  # noqa: F401  (rules import these on first use)
        from safemig.migrations import engine  # noqa: F401  (drop-without-rollback's hint names the stub file)

        catalog.preload(policy.target_major)
    initializer: Callable[..., None] | None = None if fork else _worker_init
    initargs: tuple = () if fork else (config, policy)
    estimate = expected if looked_at is None else expected * len(head) // max(looked_at(), len(head))
    chunk = max(1, min(estimate // (workers * 8), 32))  # small chunks: the first starts sooner, the last ends together
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        rows = pool.map(_worker_lint, (_job(t, text) for t, text in itertools.chain(head, jobs)), chunksize=chunk)
        return [([Finding(*row) for row in file_rows], used) for file_rows, used in rows]
