"""Cutting a valid file where PostgreSQL's parser cut it gives exactly the splitter's statements."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from safemig.lint.parse import _parse_whole_file, _statements_from_parser, parse_sql, validate
from safemig.sql.split import split_with_comments

REPO_ROOT = Path(__file__).resolve().parents[2]

STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS orders (id uuid PRIMARY KEY, note text DEFAULT 'a;b', total numeric(12, 2))",
    "ALTER TABLE orders ADD COLUMN IF NOT EXISTS c text",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx ON orders (c)",
    "SELECT E'it\\'s; fine', \"odd;name\" FROM (SELECT 1 AS \"odd;name\") s",
    "CREATE OR REPLACE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  RETURN NEW; -- DROP TABLE x;\nEND;\n$$ LANGUAGE plpgsql",
    "CREATE OR REPLACE FUNCTION one() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 ELSE 0 END;\nEND",
    "DO $do$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN CREATE TYPE mood AS ENUM ('a'); END IF; END $do$",
    "UPDATE orders SET c = 'x' /* inline; comment */ WHERE id IS NULL",
    "COMMENT ON TABLE orders IS 'it''s fine'",
    "CREATE RULE r AS ON INSERT TO orders DO ALSO (NOTIFY a; NOTIFY b)",
    "INSERT INTO orders (id)\n  VALUES (gen_random_uuid())\n  ON CONFLICT DO NOTHING",
]
GAPS = ["", " ", "\n", "\n\n", "\t", "-- a comment\n", "/* block /* nested */ */", "\n-- two\n-- lines\n", ";", " ; ",
        "-- ends at a CR\r", "\f\v", "/* caf\u00e9 */", "-- na\u00efve\n"]


def assert_same_cut(text: str) -> None:
    items = _parse_whole_file(text)
    assert items is not None, text
    cut = _statements_from_parser(text, items)
    assert [statement for statement, _ in cut] == split_with_comments(text)[0], text
    assert [base for _, base in cut] == [len(text[: s.start].encode("utf-8")) for s, _ in cut]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(GAPS), st.sampled_from(STATEMENTS), st.sampled_from(GAPS)), min_size=1, max_size=6),
       st.booleans())
@example(parts=[("", STATEMENTS[0], "")], last_terminated=False)
@example(parts=[(";;", STATEMENTS[1], "\n"), (" ; ", STATEMENTS[2], "")], last_terminated=True)
def test_generated_files_are_cut_like_the_splitter(parts, last_terminated):
    text = ""
    for index, (before, statement, after) in enumerate(parts):
        text += before + statement + after
        if index < len(parts) - 1 or last_terminated:
            text += ";"
    assert_same_cut(text)


def _bench_generator():
    spec = importlib.util.spec_from_file_location("lint_bench", REPO_ROOT / "bench" / "lint_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.migration


def test_bench_corpus_is_cut_like_the_splitter():
    migration, rng = _bench_generator(), random.Random(7)
    for n in range(300):
        assert_same_cut(migration(rng, n))


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO_ROOT).as_posix() for p in
                                        [*REPO_ROOT.glob("docker/migrations/*.sql"), *REPO_ROOT.glob("rollbacks/*.sql")]))
def test_repository_sql_is_cut_like_the_splitter(path):
    assert_same_cut((REPO_ROOT / path).read_text())


@pytest.mark.parametrize("text", [
    "SELECT 1 -- trailing comment\n;",  # where the statement ends needs a lexer
    "SELECT 1 /* c */;",
    "SELECT 'h\u00e9llo'; SELECT 2 -- \u00e9\n;\n  SELECT '\u2603';",  # libpg_query counts bytes
])
def test_statements_ending_in_comments_and_non_ascii_text_are_cut_like_the_splitter(text):
    assert_same_cut(text)
    parsed = parse_sql(text)
    assert all(s.error is None and s.node_type == "SelectStmt" for s in parsed.statements)


def test_postgres_boundaries_win_where_psqls_heuristic_differs():
    # psql's BEGIN ... END tracking takes an unquoted `begin` for a block; PostgreSQL does not.
    text = "CREATE FUNCTION public.begin() RETURNS int LANGUAGE sql RETURN 1;\nDROP TABLE IF EXISTS t /* bye */;\n"
    assert len(split_with_comments(text)[0]) == 1
    parsed = parse_sql(text)
    assert [(s.node_type, s.text, s.line) for s in parsed.statements] == [
        ("CreateFunctionStmt", "CREATE FUNCTION public.begin() RETURNS int LANGUAGE sql RETURN 1", 1),
        ("DropStmt", "DROP TABLE IF EXISTS t", 2)]


def test_a_line_comment_ends_at_a_carriage_return_as_in_postgresql():
    text = "SELECT 1; -- note\rDROP TABLE t;\n"
    assert [s.text for s in split_with_comments(text)[0]] == ["SELECT 1", "DROP TABLE t"]
    assert [s.node_type for s in parse_sql(text).statements] == ["SelectStmt", "DropStmt"]


@pytest.mark.parametrize("text", ["-- c\x00\nDROP TABLE users;\n", "SELECT 1;\x00DROP TABLE users;\n"])
def test_a_nul_byte_hides_nothing(text):
    """libpg_query stops reading at a NUL: the file goes to the splitter, the byte is an error."""
    parsed = parse_sql(text)
    if text.startswith("--"):  # in a comment: the statements around it are still read
        assert [s.node_type for s in parsed.statements] == ["DropStmt"]
    else:  # in a statement: a syntax error there (PostgreSQL would refuse the file), not silence
        (bad,) = [s for s in parsed.statements if s.error]
        assert "NUL byte" in bad.error and (bad.error_line, bad.error_column) == (1, 10)
        assert "DROP TABLE users" in bad.text


def test_nodes_match_statement_by_statement_validation():
    text = "\n".join(s + ";" for s in STATEMENTS)
    parsed = parse_sql(text)
    for stmt in parsed.statements:
        node_type, node = stmt.node_type, stmt.node
        stmt.node_type, stmt.node = None, {}
        validate(stmt)
        assert (stmt.node_type, stmt.node.keys()) == (node_type, node.keys())


def test_comments_are_found_on_demand():
    parsed = parse_sql("-- safemig:ignore rename -- reason\nALTER TABLE t RENAME a TO b;\n")
    assert [c.text for c in parsed.comments] == ["-- safemig:ignore rename -- reason"]
