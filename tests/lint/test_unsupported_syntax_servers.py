"""``unsupported-syntax`` measured on real servers: for the server's major as the target, the rule
flags exactly the examples of ``unsupported_syntax_cases`` that server rejects.

Each example runs after its setup in a transaction that is rolled back (autocommit examples, such
as VACUUM, on the test's own throwaway database, then their teardown). CI runs this on 15 with the
whole suite and on 14, 16, 17 and 18 with ``-m compat``, so every coverage claim is checked
against every supported major.
"""

from __future__ import annotations

import warnings

import pytest

from safemig.lint.parse import parse_sql
from safemig.lint.rules import unsupported_syntax as rule
from tests.lint.unsupported_syntax_cases import CASES, OLD, Case

pytestmark = pytest.mark.compat


def _statement(sql: str):
    parsed = parse_sql(sql + ";\n")
    (stmt,) = parsed.statements
    assert stmt.error is None, (sql, stmt.error)
    return stmt


def _key(feature) -> str:
    return feature if isinstance(feature, str) else f"{feature[0]}:{feature[1]}"


def _flagged(case: Case, target: int) -> list[str]:
    return [_key(f) for f in rule.features(_statement(case.sql), target)]


def _run(conn, case: Case) -> str | None:
    """``None`` if the server runs the example, else its SQLSTATE and message."""
    import psycopg

    if case.autocommit:  # the connection is in autocommit mode: each statement on its own
        try:
            if case.setup:
                conn.execute(case.setup)
            try:
                conn.execute(case.sql)
            except psycopg.Error as exc:
                return f"{exc.sqlstate}: {str(exc).splitlines()[0]}"
            return None
        finally:
            if case.teardown:
                conn.execute(case.teardown)
    with conn.transaction(force_rollback=True):
        if case.setup:
            conn.execute(case.setup)  # a failing setup is a broken example: it raises, the test fails
        try:
            with conn.transaction():  # a savepoint: the example's error is caught, the setup's is not
                conn.execute(case.sql)
        except psycopg.Error as exc:
            return f"{exc.sqlstate}: {str(exc).splitlines()[0]}"
    return None


def test_the_rule_flags_exactly_what_the_server_rejects(database_url, pg_major):
    import psycopg

    wrong, not_run = [], []
    with psycopg.connect(database_url, autocommit=True) as conn:
        # initdb of 16+ creates the collation "unicode" even without ICU; und-x-icu needs ICU
        icu = conn.execute("SELECT EXISTS (SELECT FROM pg_collation WHERE collname = 'und-x-icu')").fetchone()[0]
        for case in CASES + OLD:
            if case.icu and not icu:
                not_run.append(case.sql)
                continue
            try:
                rejected = _run(conn, case)
            except psycopg.Error as exc:
                wrong.append(f"setup failed: {case.sql}: {exc}")
                continue
            flagged = _flagged(case, pg_major)
            if bool(flagged) != bool(rejected):
                wrong.append(
                    f"PostgreSQL {pg_major} {'rejects' if rejected else 'runs'} {case.sql!r} "
                    f"({rejected or 'ok'}); the rule flags {flagged or 'nothing'}"
                )
            elif flagged and case.feature not in flagged:
                wrong.append(f"{case.sql!r}: flagged as {flagged}, not as {case.feature}")
    assert not wrong, "\n".join(wrong)
    if not_run:  # said, not hidden: the ICU examples are measured only on servers built with ICU
        warnings.warn(f"PostgreSQL {pg_major} has no ICU: {len(not_run)} examples not run: {not_run}", stacklevel=1)


def test_names_read_from_this_server_agree_with_the_shipped_data(database_url, pg_major):
    """since.json says which functions, settings and predefined roles are newer than each major:
    this server has none of those newer than its major, and all of those up to its major."""
    import psycopg

    data = rule.since()
    with psycopg.connect(database_url) as conn:
        have = {
            "settings": {r[0] for r in conn.execute("SELECT name FROM pg_settings")},
            "roles": {r[0] for r in conn.execute(r"SELECT rolname FROM pg_roles WHERE rolname LIKE 'pg\_%'")},
            "functions": {
                r[0]
                for r in conn.execute("SELECT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace")
            },
        }
    for kind in ("settings", "roles"):
        newer = {n for n, m in data[kind].items() if m > pg_major}
        assert not newer & have[kind], (kind, sorted(newer & have[kind]))
        assert {n for n, m in data[kind].items() if m <= pg_major} <= have[kind], kind
    # functions: the data also holds contrib extensions' functions, which this database has not created
    newer = {n for n, m in data["functions"].items() if m > pg_major}
    assert not newer & have["functions"], sorted(newer & have["functions"])


def test_every_feature_has_an_example_that_newer_targets_accept():
    keys = {c.feature for c in CASES}
    assert set(rule.FEATURES) <= keys, sorted(set(rule.FEATURES) - keys)
    for case in CASES:
        kind, _, name = case.feature.partition(":")
        if kind.startswith("gone-"):  # removed in ``major``: flagged from there on
            major = rule.since()["removed"][kind[5:] + "s"][name]
            assert case.feature in _flagged(case, major), (case.sql, _flagged(case, major))
            assert _flagged(case, major - 1) == [], (case.sql, _flagged(case, major - 1))
            continue
        major = rule.FEATURES[kind].major if not name else rule.since()[kind + "s"][name]
        assert case.feature in _flagged(case, major - 1), (case.sql, _flagged(case, major - 1))
        assert _flagged(case, major) == [], (case.sql, _flagged(case, major))
    for case in OLD:
        assert _flagged(case, 14) == [], (case.sql, _flagged(case, 14))


def coverage_table() -> str:
    """The docs' table of FEATURES, each with its example (docs/unsupported-syntax.md)."""
    examples: dict[str, str] = {}
    for case in CASES:
        examples.setdefault(case.feature, case.sql)
    rows = ["| major | feature (key) | example (run on every server) |", "| --- | --- | --- |"]
    order = list(rule.FEATURES)
    for key, feature in sorted(rule.FEATURES.items(), key=lambda kv: (kv[1].major, order.index(kv[0]))):
        sql = examples[key].replace("|", "\\|")
        sql = sql if len(sql) <= 90 else sql[:87] + "..."
        rows.append(f"| {feature.major} | {feature.name} (`{key}`) | `{sql}` |")
    return "\n".join(rows)


def test_the_docs_list_every_feature_with_its_example():
    import os

    from tests.conftest import REPO_ROOT

    doc = REPO_ROOT / "docs" / "unsupported-syntax.md"

    def section(text: str) -> tuple[int, int]:
        return text.index("-->\n", text.index("<!-- coverage-table")) + 4, text.index("<!-- /coverage-table -->")

    text = doc.read_text(encoding="utf-8")
    if os.environ.get("SAFEMIG_UPDATE_GOLDEN") == "1":
        start, end = section(text)
        doc.write_text(text[:start] + coverage_table() + "\n" + text[end:], encoding="utf-8")
        text = doc.read_text(encoding="utf-8")
    start, end = section(text)
    assert text[start:end] == coverage_table() + "\n", "run with SAFEMIG_UPDATE_GOLDEN=1 and review the diff"
