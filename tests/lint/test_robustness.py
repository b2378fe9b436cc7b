"""Arbitrary text never makes the splitter or the engine raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safemig.config import load_config
from safemig.lint import lint_text
from safemig.sql.split import split_statements

SQLISH = st.lists(
    st.sampled_from(["CREATE", "TABLE", "DROP", "ALTER", "t", "(", ")", ";", ",", "'", "''", '"', "$$", "$a$", "--",
                     "/*", "*/", "\n", " ", "E'", "\\", "BEGIN", "END", "FUNCTION", "DO", "IF", "NOT", "EXISTS",
                     "INDEX", "CONCURRENTLY", "ON", "ADD", "COLUMN", "int", "NULL", "safemig:ignore", "rename",
                     "-- safemig:ignore-file json-column", "RENAME", "TO", "x", "1", "json", "serial"]),
    max_size=40,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), SQLISH))
def test_arbitrary_text_never_raises(tmp_path, text):
    statements = split_statements(text)
    for stmt in statements:
        assert text[stmt.start:stmt.end] == stmt.text
    report = lint_text(text, load_config(cwd=tmp_path))
    for finding in report.findings:
        assert finding.line >= 1 and finding.column >= 1


@st.composite
def _statement_lines(draw):
    """(first line, last line) of statements in file order, several of them possibly on one line."""
    lines, current = [], 1
    for _ in range(draw(st.integers(0, 8))):
        first = current + draw(st.sampled_from([0, 0, 1, 2]))
        current = first + draw(st.sampled_from([0, 0, 1, 3]))
        lines.append((first, current))
    return lines


@given(_statement_lines(), st.integers(0, 40))
def test_statement_finder_agrees_with_a_scan(statement_lines, line):
    from safemig.lint.ignores import statement_finder

    scan = next((i for i, (first, last) in enumerate(statement_lines) if first <= line <= last), None)
    assert statement_finder(statement_lines)(line) == scan
