"""Turn one SQL file into statements that rules can read: PostgreSQL's verdict plus sqlglot's AST.

Two parsers, each for what it is good at:

* **pglast** (libpg_query, PostgreSQL's own grammar) validates every statement, so a
  statement PostgreSQL would reject is reported with its location instead of being
  half-understood, and names its exact node type (``AlterTableStmt``, ``DoStmt``...),
  which is how statements sqlglot leaves as ``exp.Command`` are classified.
* **sqlglot** (postgres dialect, the compiled build) is the rule AST. It is parsed lazily,
  only when a rule asks, and never re-emitted: findings quote the user's original text.

Both libraries are imported inside the functions that use them, so a run whose results
all come from the cache imports neither.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from safemig.sql.split import Comment, Statement, split_with_comments


@dataclass
class SqlStatement:
    """One statement of a file: its original text and position, PostgreSQL's parse, sqlglot's AST."""

    raw: Statement
    node_type: str | None = None  # pglast node type, e.g. "AlterTableStmt"; None if it did not parse
    node: dict[str, Any] = field(default_factory=dict)  # the node's fields (libpg_query JSON)
    error: str | None = None  # why PostgreSQL rejects it
    error_line: int = 0
    error_column: int = 0

    @property
    def text(self) -> str:
        return self.raw.text

    @property
    def line(self) -> int:
        return self.raw.line

    @property
    def column(self) -> int:
        return self.raw.column

    @property
    def end_line(self) -> int:
        return self.raw.end_line

    @property
    def first_line(self) -> str:
        return self.raw.first_line

    @cached_property
    def ast(self) -> Any:
        """The sqlglot expression (``None`` when sqlglot cannot parse it; ``exp.Command`` when it gave up)."""
        if self.error is not None:
            return None
        return sqlglot_parse(self.raw.text)

    @property
    def is_command(self) -> bool:
        """True when sqlglot fell back to an opaque ``Command`` (or failed): use :attr:`node_type`."""
        from sqlglot import exp

        return self.ast is None or isinstance(self.ast, exp.Command)


def sqlglot_parse(text: str) -> Any:
    """sqlglot's postgres AST for one statement, or ``None`` if it raises (it is not the validator)."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    logging.getLogger("sqlglot").setLevel(logging.CRITICAL)  # "falling back to Command" is not news
    try:
        trees = [t for t in sqlglot.parse(text, read="postgres") if t is not None]
    except (SqlglotError, RecursionError, ValueError):
        return None
    return trees[0] if len(trees) == 1 else None


def _offset_to_line_col(text: str, offset: int, line: int, column: int) -> tuple[int, int]:
    """Line/column in the file of character ``offset`` inside a statement starting at line/column."""
    before = text[:offset]
    newlines = before.count("\n")
    if newlines == 0:
        return line, column + offset
    return line + newlines, offset - before.rfind("\n")


def validate(stmt: SqlStatement) -> None:
    """Ask PostgreSQL's parser about ``stmt``; record its node type, or the error and where."""
    from pglast import parser

    raw = stmt.raw
    if raw.unterminated:
        stmt.error = raw.unterminated
        stmt.error_line, stmt.error_column = raw.line, raw.column
        return
    try:
        tree = json.loads(parser.parse_sql_json(raw.text))
    except parser.ParseError as exc:
        message, location = (exc.args + (None, None))[:2]
        stmt.error = str(message)
        if isinstance(location, int) and 0 <= location <= len(raw.text):
            stmt.error_line, stmt.error_column = _offset_to_line_col(raw.text, location, raw.line, raw.column)
        else:  # "at end of input"
            stmt.error_line, stmt.error_column = _offset_to_line_col(raw.text, len(raw.text), raw.line, raw.column)
        return
    except RecursionError:  # absurdly nested input; PostgreSQL would refuse it too
        stmt.error = "statement is nested too deeply to parse"
        stmt.error_line, stmt.error_column = raw.line, raw.column
        return
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:  # only possible for text the splitter kept together, e.g. a lone comment
        stmt.error = "not a single SQL statement"
        stmt.error_line, stmt.error_column = raw.line, raw.column
        return
    ((node_type, node),) = stmts[0]["stmt"].items()
    stmt.node_type, stmt.node = node_type, node


@dataclass
class ParsedFile:
    """A file's statements (each validated) and its comments (where ignore directives live)."""

    text: str
    statements: list[SqlStatement]
    comments: list[Comment]


def parse_sql(text: str) -> ParsedFile:
    """Split ``text`` into statements and validate each with PostgreSQL's parser."""
    raw_statements, comments = split_with_comments(text)
    statements = [SqlStatement(raw) for raw in raw_statements]
    for stmt in statements:
        validate(stmt)
    return ParsedFile(text=text, statements=statements, comments=comments)
