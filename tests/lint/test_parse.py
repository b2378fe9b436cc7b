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
GAPS = ["", " ", "\n", "\n\n", "\t", "-- a comment\n", "/* block /* nested */ */", "\n-- two\n-- lines\n", ";", " ; "]


def assert_same_cut(text: str) -> None:
    items = _parse_whole_file(text)
    assert items is not None, text
    fast = _statements_from_parser(text, items)
    if fast is None:  # the splitter's job (non-ASCII, a comment at a statement's end)
        return
    assert fast == split_with_comments(text)[0], text


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
    cut_by_parser = 0
    for n in range(300):
        text = migration(rng, n)
        assert_same_cut(text)
        cut_by_parser += _statements_from_parser(text, _parse_whole_file(text)) is not None
    assert cut_by_parser == 300  # the fast path is really taken


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO_ROOT).as_posix() for p in
                                        [*REPO_ROOT.glob("docker/migrations/*.sql"), *REPO_ROOT.glob("rollbacks/*.sql")]))
def test_repository_sql_is_cut_like_the_splitter(path):
    assert_same_cut((REPO_ROOT / path).read_text())


@pytest.mark.parametrize("text", [
    "SELECT 1 -- trailing comment\n;",  # the end of a statement ending in a comment needs a lexer
    "SELECT 1 /* c */;",
    "SELECT 'h\u00e9llo'; SELECT 2;",  # libpg_query counts bytes
])
def test_the_splitter_takes_over_where_the_parser_cannot_say(text):
    assert _statements_from_parser(text, _parse_whole_file(text)) is None
    parsed = parse_sql(text)
    assert [s.raw for s in parsed.statements] == split_with_comments(text)[0]
    assert all(s.error is None and s.node_type == "SelectStmt" for s in parsed.statements)


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
