"""What the earlier migrations of a directory did to a column or a constraint: its type, NOT NULL, CHECKs.

Rules that judge a change by what it changes from (``ALTER COLUMN TYPE text`` is free
from ``varchar``, a rewrite from ``integer``; ``SET NOT NULL`` is free after a validated
``CHECK (col IS NOT NULL)``; ``ADD PRIMARY KEY USING INDEX`` scans a nullable column) ask
here. The answer is read from the migrations with a lower version in the same directory
(sqlx's flat layout, or Diesel's ``<version>_<name>/up.sql`` directories), in version order.

Cheap by construction: the words of each directory's files are collected once per process,
on the first question about it, and only the files that name both the table and the
column are parsed. A migration whose rules asked here is marked (:func:`consulted`): the lint
cache keeps, with its findings, a digest of the earlier migrations' contents and checks it
before it answers (:mod:`safemig.lint.cache`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from safemig.lint import facts
from safemig.lint.catalog import ColumnType
from safemig.lint.targets import history_root, migration_files

_WORD = re.compile(r"[A-Za-z_][\w$]*")


@dataclass
class ColumnState:
    """A column as the migrations so far left it (``None``: they do not say)."""

    type: ColumnType | None = None
    not_null: bool | None = None


@dataclass
class _Directory:
    files: tuple[tuple[int, str], ...]  # (version, path), in version order
    words: list[set[str]] | None = None  # the lower-cased words of each file, as files is ordered
    parsed: dict[str, list] = field(default_factory=dict)


_DIRS: dict[Path, _Directory] = {}
_CONSULTED: set[str] = set()  # the migrations whose findings read their directory's history (this process)


def consulted(migration: Path) -> bool:
    """True when a rule judging ``migration`` read the earlier migrations (the lint cache then checks them)."""
    return str(migration) in _CONSULTED


def _directory(directory: Path) -> _Directory:
    found = _DIRS.get(directory)
    if found is None:
        found = _DIRS[directory] = _Directory(migration_files(directory))
    return found


def _word_sets(d: _Directory) -> list[set[str]]:
    """The words of each file, read once per directory (a set per file: building a word -> files
    index cost more than looking the few names of each question up in the earlier files' sets)."""
    if d.words is None:
        d.words = []
        for _, path in d.files:
            try:
                text = _read(path).lower()
            except OSError:
                text = ""
            d.words.append(_words(text))
    return d.words


# Every ASCII character that cannot be part of a word becomes a space: then ``str.split`` cuts the
# words, half the time of ``_WORD.findall`` (the index is built over every file of a directory).
_NOT_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c in "_$")})
_DIGITS_AND_DOLLAR = "0123456789$"


def _words(text: str) -> set[str]:
    """The words of ``text`` as ``_WORD.findall`` finds them, or a few more (a superset only makes
    ``earlier_statements`` parse a file that names nothing it looks for)."""
    if not text.isascii():  # other characters may separate words too: the regular expression knows which
        return set(_WORD.findall(text))
    words = set(text.translate(_NOT_WORD).split())
    # findall starts a word at a letter or "_": "1abc" and "$1abc" hold the word "abc"
    words.update([w.lstrip(_DIGITS_AND_DOLLAR) for w in words if w[0] in _DIGITS_AND_DOLLAR])
    words.discard("")
    return words


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _statements(d: _Directory, path: str) -> list:
    if path not in d.parsed:
        from safemig.lint.parse import parse_recent

        try:
            text = _read(path)
        except OSError:
            text = ""
        d.parsed[path] = [s for s in parse_recent(text).statements if s.error is None]
    return d.parsed[path]


def earlier_statements(migration: Path, version: int | None, *names: str):
    """The valid statements, in order, of the migrations before ``version`` that name every one of ``names``."""
    if version is None:
        return
    _CONSULTED.add(str(migration))
    d = _directory(history_root(migration))
    wanted = [facts.bare(name).lower() for name in names if name]
    if not wanted:
        return
    words = _word_sets(d)
    for position, (file_version, path) in enumerate(d.files):
        if file_version >= version:
            break
        if all(word in words[position] for word in wanted):
            yield from _statements(d, path)


def fold_column(state: ColumnState, stmt, table: str, column: str) -> ColumnState:
    """``state`` after ``stmt`` (CREATE TABLE, ADD COLUMN, ALTER COLUMN TYPE, SET/DROP NOT NULL) for
    ``table.column``."""
    if stmt.node_type == "CreateStmt" and facts.bare(facts.created_table(stmt)) == facts.bare(table):
        for element in stmt.node.get("tableElts") or []:
            coldef = element.get("ColumnDef")
            if coldef and coldef.get("colname") == column:
                state = _from_definition(coldef)
            constraint = element.get("Constraint", {})
            if constraint.get("contype") == "CONSTR_PRIMARY" and column in facts.strings(constraint.get("keys")):
                state.not_null = True
        return state
    for action in facts.alter_actions(stmt):
        if facts.bare(action.table) != facts.bare(table):
            continue
        if action.subtype == "AT_AddColumn" and action.column == column:
            state = _from_definition(action.column_def)
        elif action.name == column and action.subtype == "AT_AlterColumnType":
            state = ColumnState(facts.column_type(action.column_def.get("typeName") or {}), state.not_null)
        elif action.name == column and action.subtype == "AT_SetNotNull":
            state.not_null = True
        elif action.name == column and action.subtype == "AT_DropNotNull":
            state.not_null = False
        elif action.subtype == "AT_AddConstraint" and action.constraint_type == "PRIMARY KEY":
            if column in facts.strings(action.constraint.get("keys")):
                state.not_null = True
    return state


def _from_definition(coldef: dict) -> ColumnState:
    contypes = facts.column_constraints(coldef)
    return ColumnState(
        facts.column_type(coldef.get("typeName") or {}),
        "CONSTR_NOTNULL" in contypes or "CONSTR_PRIMARY" in contypes,
    )


def column_before(migration: Path, version: int | None, table: str, column: str) -> ColumnState:
    """What the migrations before ``version`` left of ``table.column``."""
    state = ColumnState()
    for stmt in earlier_statements(migration, version, table, column):
        state = fold_column(state, stmt, table, column)
    return state


def not_null_checks(statements, table: str) -> dict[str, str]:
    """``{constraint name: column}`` for every ``CHECK (column IS NOT NULL)`` the statements add to ``table``."""
    out = {}
    for stmt in statements:
        for action in facts.added_constraints(stmt):
            if facts.bare(action.table) != facts.bare(table) or action.constraint_type != "CHECK":
                continue
            test = action.constraint.get("raw_expr", {}).get("NullTest", {})
            fields = facts.strings(test.get("arg", {}).get("ColumnRef", {}).get("fields"))
            if test.get("nulltesttype") == "IS_NOT_NULL" and len(fields) == 1:
                name = action.constraint.get("conname") or f"{facts.bare(table)}_{fields[0]}_check"
                out[name] = fields[0]
    return out


def clear() -> None:
    """Forget every directory (a long-lived caller lints again after files changed)."""
    _DIRS.clear()
    _CONSULTED.clear()
