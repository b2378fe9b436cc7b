"""Lint SQL files: find them, take what the cache knows, lint the rest, report.

The public entry point is :func:`lint_paths` (``safemig deploy`` calls it directly).
Files whose results are cached (same bytes, same rollback script, same rule set and
policy) are not parsed at all: neither the parsers nor the rule modules are imported
for them. The others are linted by :mod:`safemig.lint.runner`, in parallel on every
core when there are enough of them.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from safemig.config import Config
from safemig.lint.cache import Cache
from safemig.lint.finding import Finding, LintReport
from safemig.lint.policy import Policy, load_policy
from safemig.lint.registry import rule_sources
from safemig.lint.targets import (
    ROLLBACK,
    Target,
    classify_target,
    clear_run_caches,
    display_path,
    expand,
    resolved_dir,
)
from safemig.migrations.files import read_sql

# --- public API -----------------------------------------------------------------------------------


def run_policy(config: Config, *, env: str | None = None, server_major: int | None = None) -> tuple[Policy, list[str]]:
    """The policy of this run and what it says about itself (``notes``: rules skipped and why).

    ``server_major`` (the server's major, when the run connected to one) is the target
    version unless ``[lint] pg_version`` names one. ``env`` is the env that will apply the
    migrations: safemig always sets its ``lock_timeout`` for the session, so
    missing-lock-timeout has nothing to find (unless the env disables it with ``"0"``).
    """
    policy = load_policy(config)
    notes = []
    if server_major is not None and policy.pg_version is None:
        policy = replace(policy, pg_version=server_major)
    if env is not None:
        lock_timeout = config.env(env).lock_timeout
        if lock_timeout.ms:  # as PostgreSQL reads it: "0.4ms" is 0 too
            policy = replace(policy, runner_lock_timeout=str(lock_timeout))
            notes.append(
                f"missing-lock-timeout not checked: safemig applies these migrations to env {env} with "
                f"lock_timeout = {lock_timeout} set for the session (plain sqlx or Diesel would not)"
            )
    return policy, notes


def lint_paths(
    paths: list[Path],
    config: Config,
    *,
    use_cache: bool = True,
    env: str | None = None,
    server_major: int | None = None,
) -> LintReport:
    """Lint SQL files and directories (recursively ``*.sql``) and the rollback scripts of the migrations.

    Migrations get every rule; rollback scripts (``rollbacks/``, ``*.down.sql``, Diesel
    ``down.sql``) get every rule except those marked ``FILES = "migrations"`` (file
    naming, DROP-needs-rollback). Raises :class:`~safemig.errors.UsageError` for a path
    that does not exist and :class:`~safemig.errors.ConfigError` for a bad policy.
    ``env`` and ``server_major``: see :func:`run_policy`.
    """
    with _fewer_collections():
        return _lint_paths(paths, config, use_cache=use_cache, env=env, server_major=server_major)


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run without the cyclic garbage collector while linting, then as before.

    A lint run allocates millions of small dicts and lists (PostgreSQL's parse trees, read
    from JSON) and makes no cycles: reference counting frees each file's trees as soon as it
    is done (measured: 3 objects in cycles after the whole 3,947-file corpus). A collection
    only walks the live trees looking for garbage that is not there: at CPython's default
    threshold it was 17% of a cold run, still ~0.1-0.15 s of 1.4 s in-process at a threshold
    of 10,000. Forked workers inherit the setting; spawned ones turn it off themselves.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _lint_paths(
    paths: list[Path], config: Config, *, use_cache: bool, env: str | None, server_major: int | None
) -> LintReport:
    policy, notes = run_policy(config, env=env, server_major=server_major)
    sources = rule_sources(policy.house_dir)
    policy.check_rule_ids(set(sources))
    clear_run_caches()
    files = expand(paths)
    cache = Cache.for_run(config.root, sources, policy, config.rollbacks_dir) if use_cache else None
    targets: list[Target] = []
    results: dict[int, list[Finding]] = {}
    misses: list[int] = []
    keys: dict[int, str] = {}

    def lookup(target: Target) -> tuple[Target, str] | None:
        """Read one file and take its findings from the cache; the job to lint it if the cache cannot answer."""
        index = len(targets)
        targets.append(target)
        raw, text = read_sql(target.path)
        if cache is not None:
            key = keys[index] = cache.key(target, raw, display_path(target.path))
            found = cache.get(key, target)
            if found is not None:
                results[index] = found
                return None
        misses.append(index)
        return target, text

    def uncached() -> Iterator[tuple[Target, str]]:
        """Classify and read each file, yielding those the cache cannot answer: the workers start on
        the first ones while the rest are read. The rollback scripts of the migrations come last."""
        seen = set(files)
        real_dirs = {os.path.dirname(str(path)) for path in files}  # expand() resolved them
        rollbacks = []
        for path in files:
            target = classify_target(path, config)
            rollback = _resolved(target.rollback, real_dirs) if target.rollback is not None else None
            if rollback is not None and rollback not in seen:
                seen.add(rollback)
                rollbacks.append(Target(rollback, ROLLBACK, None, "", None))
            job = lookup(target)
            if job is not None:
                yield job
        for target in rollbacks:
            job = lookup(target)
            if job is not None:
                yield job

    jobs = uncached()
    first = next(jobs, None)
    linted: list[tuple[list[Finding], bool]] = []
    if first is not None:  # a run answered entirely by the cache imports neither the parsers nor the rules
        from safemig.lint.registry import all_rules
        from safemig.lint.runner import lint_many

        linted = lint_many(
            itertools.chain([first], jobs),
            config,
            policy,
            all_rules(policy.house_dir),
            expected=len(files),
            looked_at=lambda: len(targets),
        )
    used_history: set[int] = set()
    for index, (findings, used) in zip(misses, linted, strict=True):
        results[index] = findings
        if used:
            used_history.add(index)
    if cache is not None and misses:
        cache.put_many({keys[i]: (results[i], targets[i] if i in used_history else None) for i in misses})
    findings = sorted((f for i in range(len(targets)) for f in results[i]), key=lambda f: f.sort_key)
    return LintReport(findings=findings, files=[display_path(t.path) for t in targets], notes=notes)


def _resolved(path: Path, real_dirs: set[str]) -> Path:
    """``path.resolve()`` for a rollback script, cheaply: it usually lies in a directory known to be
    real already (``real_dirs``: those of the files :func:`expand` resolved, e.g. Diesel's
    ``down.sql`` beside ``up.sql``), else in one resolved once per run (the rollbacks directory).
    Resolving every component of every rollback's path was a tenth of a warm-cache run."""
    text = str(path)
    if os.path.islink(text):
        return path.resolve()
    head, name = os.path.split(text)
    return path if head in real_dirs else Path(os.path.join(resolved_dir(head), name))


def lint_text(text: str, config: Config, path: Path | None = None) -> LintReport:
    """Lint SQL given as text (as if it were the migration at ``path``): for tests and editors."""
    from safemig.lint.registry import all_rules
    from safemig.lint.runner import build_file, run_rules

    policy = load_policy(config)
    rules = all_rules(policy.house_dir)
    clear_run_caches()  # an editor calls this again and again: list the directories afresh
    path = path or (config.migrations_dir / "999_stdin.sql")
    target = classify_target(path, config)
    findings = run_rules(build_file(target, config, text, policy), rules, policy)
    return LintReport(findings=sorted(findings, key=lambda f: f.sort_key), files=[display_path(path)])
