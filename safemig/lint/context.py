"""What a rule receives: one whole SQL file with everything needed to judge it.

A rule sees the file (path, version, whether it is a migration or a rollback script,
``-- no-transaction``), every statement (validated by PostgreSQL's parser, with sqlglot's
AST on demand), the rollback script of the migration, the other file names of its
directory, which tables the file itself created before a given statement (those are
new and empty, so the "existing table" rules leave them alone), and what a statement runs
(a DO block's body, the body of a function the file created and the statement calls).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from safemig.lint import facts
from safemig.lint.catalog import DEFAULT_PG_VERSION
from safemig.lint.finding import Violation
from safemig.lint.parse import ParsedFile, SqlStatement
from safemig.lint.targets import MIGRATION

_WORD = re.compile(r"[\w$]+")
T = TypeVar("T")


class cached_property(Generic[T]):  # noqa: N801  (used like functools.cached_property)
    """``functools.cached_property`` without its lock: Python 3.11's takes an RLock on every first
    access, which cost more than most of the values it guards (13,000 first accesses in a corpus
    run). A LintFile belongs to one thread. Like the original, the value lands in the instance's
    ``__dict__`` and later reads never reach this descriptor."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # the descriptor itself, on the class
        value = obj.__dict__[self.name] = self.fn(obj)
        return value
_RUNS_CALLS = {"SelectStmt", "CallStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"}  # evaluate the functions they name


@dataclass
class LintFile:
    """One SQL file under review."""

    path: Path
    display: str  # the path as shown in findings (relative to the working directory when possible)
    role: str  # MIGRATION or ROLLBACK
    parsed: ParsedFile
    version: int | None = None
    description: str = ""
    no_transaction: bool = False
    rollback_path: Path | None = None
    rollback: ParsedFile | None = None  # the rollback script, parsed, if there is one
    rollback_error: str | None = None  # why the rollback script could not be read
    siblings: tuple[str, ...] = ()  # .sql names in the same directory
    name_problem: str | None = None  # why the file name is not a valid migration name
    ignores: list = field(default_factory=list)  # safemig:ignore directives (ignores.Ignore)
    known_rules: set[str] = field(default_factory=set)  # every rule id, for checking ignore directives
    enabled_rules: set[str] = field(default_factory=set)  # rule ids enabled for this file
    pg_version: int = DEFAULT_PG_VERSION  # the PostgreSQL major the migration will run on ([lint] pg_version)
    runner_lock_timeout: str | None = None  # the lock_timeout safemig sets for the session of the env that applies it

    @property
    def statements(self) -> list[SqlStatement]:
        return self.parsed.statements

    @cached_property
    def valid_statements(self) -> list[SqlStatement]:
        """Statements PostgreSQL's parser accepts (the others get a syntax-error finding only)."""
        return [s for s in self.parsed.statements if s.error is None]

    @cached_property
    def _by_kind(self) -> dict[str, list[SqlStatement]]:
        by_kind: dict[str, list[SqlStatement]] = {}
        for stmt in self.valid_statements:
            by_kind.setdefault(stmt.node_type or "", []).append(stmt)
        return by_kind

    def statements_of(self, kinds) -> list[SqlStatement]:
        """The valid statements whose node type is one of ``kinds``, in file order (do not modify the list).

        What a rule declaring ``KINDS`` iterates: each statement reaches only the rules for its
        kind, instead of every rule looking at every statement and asking what it is.
        """
        if len(kinds) == 1:
            (kind,) = kinds
            return self._by_kind.get(kind, [])
        return [s for s in self.valid_statements if s.node_type in kinds]

    @cached_property
    def _index(self) -> dict[int, int]:
        return {id(s): i for i, s in enumerate(self.statements)}

    @property
    def is_migration(self) -> bool:
        return self.role == MIGRATION

    @staticmethod
    def _table_key(name: str) -> tuple[str, str]:
        """``(schema, table)``; no schema means ``public`` (``audit.events`` is not ``events``).

        Not lower-cased: PostgreSQL already folded the unquoted names in the tree, so
        ``"Orders"`` (kept as written) and ``orders`` are two tables.
        """
        schema, _, table = name.rpartition(".")
        return schema or "public", table

    @cached_property
    def _created_at(self) -> dict[tuple[str, str], int]:
        created: dict[tuple[str, str], int] = {}
        for index, stmt in enumerate(self.statements):
            name = facts.created_table(stmt)
            if name:
                created.setdefault(self._table_key(name), index)
        return created

    def is_new_table(self, table: str, stmt: SqlStatement) -> bool:
        """True when ``table`` was created by this file before ``stmt`` (so it is new and empty)."""
        index = self._created_at.get(self._table_key(table))
        return index is not None and index < self._index[id(stmt)]

    @cached_property
    def _indexes_created_at(self) -> dict[str, int]:
        created: dict[str, int] = {}
        for index, stmt in enumerate(self.statements):
            if stmt.node_type == "IndexStmt" and stmt.node.get("idxname"):
                created.setdefault(stmt.node["idxname"], index)
        return created

    def is_new_index(self, name: str, stmt: SqlStatement) -> bool:
        """True when index ``name`` was created by this file before ``stmt`` (its build was judged there)."""
        index = self._indexes_created_at.get(facts.bare(name))
        return index is not None and index < self._index[id(stmt)]

    def executed(self, stmt: SqlStatement) -> list[SqlStatement]:
        """``stmt`` and the statements it runs with the migration: a DO block's body, and the body of
        every function or procedure this file created before ``stmt`` and ``stmt`` calls (SELECT f(),
        CALL p(), PERFORM f() in a DO body, also through another such routine). Like a DO block's,
        a body's statements are located at ``stmt``'s position (report at ``stmt``)."""
        calls = self._calls.get(id(stmt))
        return calls[0] if calls else facts.executed(stmt)

    def called_routines(self, stmt: SqlStatement) -> list[SqlStatement]:
        """The CREATE FUNCTION / PROCEDURE statements of this file whose bodies ``stmt`` runs (see :meth:`executed`)."""
        calls = self._calls.get(id(stmt))
        return calls[1] if calls else []

    @cached_property
    def _calls(self) -> dict[int, tuple[list[SqlStatement], list[SqlStatement]]]:
        """For each statement that calls a routine of this file: what it runs, and the routines it runs."""
        routines: dict[str, SqlStatement] = {}  # name -> its latest CREATE FUNCTION / PROCEDURE so far
        words: set[str] = set()  # their names, lower-cased, when they are plain words
        odd: list[str] = []  # the others ("My Func"), found by substring
        out: dict[int, tuple[list[SqlStatement], list[SqlStatement]]] = {}
        for stmt in self.valid_statements:
            # cheap first: most statements name no routine (a word set keeps this linear in the file's size)
            text = stmt.text.lower() if routines else ""
            if routines and (
                any(name in text for name in odd)
                or (any(name in text for name in words) if len(words) <= 8 else words.intersection(_WORD.findall(text)))
            ):
                ran = facts.executed(stmt)
                called, bodies = self._routine_statements(ran, routines)
                if called:
                    out[id(stmt)] = (ran + bodies, called)
            name = facts.routine_name(stmt)
            if name:
                routines[name] = stmt
                if _WORD.fullmatch(name.lower()):
                    words.add(name.lower())
                else:
                    odd.append(name.lower())
        return out

    @staticmethod
    def _routine_statements(
        statements: list[SqlStatement], routines: dict[str, SqlStatement]
    ) -> tuple[list[SqlStatement], list[SqlStatement]]:
        """The ``routines`` that ``statements`` call (and that those call), once each, and their bodies' statements.

        A routine runs when a statement that evaluates expressions calls it (SELECT, CALL,
        INSERT/UPDATE/DELETE), not when a DEFAULT, a view or a trigger merely names it.
        Names match unqualified, as PostgreSQL folded them.
        """
        queue, called, seen, out = list(statements), [], set(), []
        while queue:
            stmt = queue.pop(0)
            if stmt.node_type not in _RUNS_CALLS:
                continue
            for name in facts.function_calls(stmt.node):
                if name in routines and name not in seen:
                    seen.add(name)
                    called.append(routines[name])
                    body = facts.routine_body(routines[name]).statements
                    out.extend(body)
                    queue.extend(body)
        return called, out

    def column_before(self, table: str, column: str, stmt: SqlStatement):
        """What ``table.column`` is just before ``stmt``: its type and NOT NULL, as this file and the
        earlier migrations of its directory left it (:mod:`safemig.lint.history`); fields are ``None``
        where they do not say."""
        from safemig.lint import history

        position = self._index[id(stmt)]
        own = [s for s in self.statements[:position] if s.error is None]
        state = history.ColumnState()
        if not self.is_new_table(table, stmt):
            state = history.column_before(self.path, self.version, table, column)
        for earlier in own:
            state = history.fold_column(state, earlier, table, column)
        return state

    def not_null_check_validated(self, table: str, column: str, stmt: SqlStatement) -> bool:
        """True when, before ``stmt``, this file validates a ``CHECK (column IS NOT NULL)`` of ``table``
        (added in this file or in an earlier migration): PostgreSQL then proves SET NOT NULL without a scan."""
        from safemig.lint import history

        position = self._index[id(stmt)]
        validated = [
            a.name
            for s in self.statements[:position]
            if s.error is None
            for a in facts.alter_actions(s)
            if a.subtype == "AT_ValidateConstraint" and facts.bare(a.table) == facts.bare(table)
        ]
        if not validated:
            return False
        own = [s for s in self.statements[:position] if s.error is None]
        checks = history.not_null_checks(own, table)
        for name in validated:
            if name not in checks:
                checks.update(history.not_null_checks(history.earlier_statements(self.path, self.version, name), table))
            if checks.get(name) == column:
                return True
        return False

    def violation(self, stmt: SqlStatement, message: str, hint: str) -> Violation:
        """A violation located at ``stmt``'s first token, quoting the statement as written."""
        return Violation(stmt.line, stmt.column, message, hint, stmt.text)

    def at_file(self, message: str, hint: str) -> Violation:
        """A violation about the file as a whole (its name, its rollback script)."""
        return Violation(1, 1, message, hint, "")
