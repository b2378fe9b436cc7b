"""Small, exact questions rules ask about a statement, answered once.

Structure (what kind of statement, which table, which ALTER TABLE actions, IF [NOT] EXISTS)
and column definitions (types, defaults, generated columns) come from PostgreSQL's own
parse tree (pglast). It is exact where sqlglot is not (``ALTER TABLE t RENAME a TO b`` is
a column rename; a multi-action ALTER TABLE with one action sqlglot does not know becomes
an opaque ``Command`` as a whole), and it is already there: the file was validated with it.
Reading the same facts from sqlglot's AST cost a second parse of every CREATE TABLE and
ALTER TABLE, the largest single cost of a lint run (see bench/README.md).

Names are returned as written by the user (unquoted identifiers lower-cased, as
PostgreSQL folds them) so hints can be pasted back. Compare them as they are: lower-casing
them again would make ``"Orders"`` and ``orders`` (two tables) one.

**The house-rule API.** The names in ``__all__`` are public: built-in rules and house rules
use only those (tests/lint checks it), and they keep their meaning across releases. The
rest of this module is private. Together with :class:`safemig.lint.context.LintFile`
(``file.valid_statements``, ``file.is_new_table``, ``file.violation``, ...) and
:class:`safemig.lint.parse.SqlStatement` (``stmt.text``, ``stmt.node_type``, ``stmt.node``,
``stmt.ast``), this is everything a rule needs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from safemig.lint.parse import SqlStatement, json_tree

T = TypeVar("T")

__all__ = [
    # statements
    "drops",
    "Drop",
    "DROP_KINDS",
    "alter_actions",
    "AlterAction",
    "added_constraints",
    "target_table",
    "created_table",
    "is_temporary",
    "columns",
    "ColumnFact",
    "column_constraints",
    "column_type",
    "column_default",
    "option_enabled",
    "function_calls",
    "do_block",
    "DoBlock",
    "routine_body",
    "routine_name",
    "executed",
    # names and text for hints
    "strings",
    "relation_name",
    "object_name",
    "bare",
    "quote_ident",
    "qualified",
    "column_def_text",
    "clause_text",
    "SERIALS",
    "per_statement",
]


_MISSING = object()


def per_statement(
    fn: Callable[[SqlStatement], T] | None = None, *, kinds: frozenset[str] | None = None
) -> Any:
    """Compute a fact once per statement: every rule asks the same questions.

    With ``kinds`` (``@per_statement(kinds=frozenset({"AlterTableStmt"}))``), a statement of
    another type gets a new empty list at once, neither computed nor stored: most rules ask
    most facts of every statement, and the answer for the other kinds of statement is known.
    """
    if fn is None:
        return functools.partial(per_statement, kinds=kinds)
    name = fn.__name__
    compute = fn

    if kinds is None:

        @functools.wraps(fn)
        def cached(stmt: SqlStatement) -> T:
            memo = stmt.memo
            value = memo.get(name, _MISSING)  # not try/except: a raised KeyError per first question costs more
            if value is _MISSING:
                value = memo[name] = compute(stmt)
            return value

        return cached

    @functools.wraps(fn)
    def cached_for_kinds(stmt: SqlStatement) -> Any:
        if stmt.node_type not in kinds:
            return []
        memo = stmt.memo
        value = memo.get(name, _MISSING)
        if value is _MISSING:
            value = memo[name] = compute(stmt)
        return value

    return cached_for_kinds


def strings(items: list | None) -> list[str]:
    """``[{"String": {"sval": "a"}}, ...]`` -> ``["a", ...]``: a dotted name's parts as PostgreSQL's tree lists them."""
    out = []
    for item in items or []:
        if "String" in item:
            out.append(item["String"].get("sval", ""))
    return out


def relation_name(relation: dict | None) -> str:
    """``{"schemaname": "s", "relname": "t"}`` -> ``"s.t"`` (or ``"t"``)."""
    if not relation:
        return ""
    name = relation.get("relname", "")
    schema = relation.get("schemaname")
    return f"{schema}.{name}" if schema else name


def bare(name: str) -> str:
    """The last component of a dotted name, for comparing ``public.t`` with ``t``."""
    return name.rsplit(".", 1)[-1]


def object_name(obj: dict) -> str:
    """The dotted name of a DROP target, whatever its shape in the parse tree."""
    if "List" in obj:
        return ".".join(strings(obj["List"].get("items")))
    if "String" in obj:
        return obj["String"].get("sval", "")
    if "ObjectWithArgs" in obj:
        return ".".join(strings(obj["ObjectWithArgs"].get("objname")))
    if "TypeName" in obj:
        return ".".join(strings(obj["TypeName"].get("names")))
    return "?"


DROP_KINDS = {
    "OBJECT_TABLE": "TABLE",
    "OBJECT_INDEX": "INDEX",
    "OBJECT_VIEW": "VIEW",
    "OBJECT_MATVIEW": "MATERIALIZED VIEW",
    "OBJECT_FUNCTION": "FUNCTION",
    "OBJECT_PROCEDURE": "PROCEDURE",
    "OBJECT_ROUTINE": "ROUTINE",
    "OBJECT_TYPE": "TYPE",
    "OBJECT_DOMAIN": "DOMAIN",
    "OBJECT_SCHEMA": "SCHEMA",
    "OBJECT_TRIGGER": "TRIGGER",
    "OBJECT_POLICY": "POLICY",
    "OBJECT_SEQUENCE": "SEQUENCE",
    "OBJECT_EXTENSION": "EXTENSION",
    "OBJECT_FOREIGN_TABLE": "FOREIGN TABLE",
    "OBJECT_RULE": "RULE",
    "OBJECT_AGGREGATE": "AGGREGATE",
    "OBJECT_COLLATION": "COLLATION",
    "OBJECT_CONVERSION": "CONVERSION",
    "OBJECT_OPERATOR": "OPERATOR",
    "OBJECT_PUBLICATION": "PUBLICATION",
}


@dataclass(frozen=True)
class Drop:
    """Something a statement destroys: ``kind`` (TABLE, COLUMN, ...), its name, and its table if any.

    For a part of another object (a COLUMN, CONSTRAINT or ATTRIBUTE), ``table`` is that
    object and ``table_kind`` what it is: ``TABLE``, ``TYPE`` (ALTER TYPE t DROP ATTRIBUTE)
    or ``DOMAIN`` (ALTER DOMAIN d DROP CONSTRAINT).
    """

    kind: str
    name: str
    table: str
    if_exists: bool
    concurrently: bool = False
    cascade: bool = False
    table_kind: str = "TABLE"


@per_statement(
    kinds=frozenset(
        {"DropStmt", "TruncateStmt", "DropdbStmt", "DropOwnedStmt", "AlterDomainStmt", "AlterTableStmt"}
    )
)
def drops(stmt: SqlStatement) -> list[Drop]:
    """Every object ``stmt`` drops (DROP ..., ALTER TABLE ... DROP COLUMN/CONSTRAINT, TRUNCATE,
    ALTER TYPE ... DROP ATTRIBUTE, ALTER DOMAIN ... DROP CONSTRAINT)."""
    node = stmt.node
    if stmt.node_type == "DropStmt":
        kind = DROP_KINDS.get(
            node.get("removeType", ""), node.get("removeType", "").replace("OBJECT_", "").replace("_", " ")
        )
        out = []
        for obj in node.get("objects") or []:
            name = object_name(obj)
            table = ""
            if kind in ("TRIGGER", "POLICY", "RULE") and "." in name:
                table, name = name.rsplit(".", 1)
            out.append(
                Drop(
                    kind,
                    name,
                    table,
                    bool(node.get("missing_ok")),
                    bool(node.get("concurrent")),
                    node.get("behavior") == "DROP_CASCADE",
                )
            )
        return out
    if stmt.node_type == "TruncateStmt":
        return [
            Drop(
                "TRUNCATE",
                relation_name(r.get("RangeVar")),
                relation_name(r.get("RangeVar")),
                True,
                cascade=node.get("behavior") == "DROP_CASCADE",
            )
            for r in node.get("relations") or []
        ]
    if stmt.node_type == "DropdbStmt":
        return [Drop("DATABASE", node.get("dbname", ""), "", bool(node.get("missing_ok")))]
    if stmt.node_type == "DropOwnedStmt":  # every table, view, ... the roles own: re-runnable, but destructive
        return [
            Drop(
                "OWNED BY",
                r.get("RoleSpec", {}).get("rolename", "?"),
                "",
                True,
                cascade=node.get("behavior") == "DROP_CASCADE",
            )
            for r in node.get("roles") or []
        ]
    if stmt.node_type == "AlterDomainStmt" and node.get("subtype") == "X":  # X: DROP CONSTRAINT (PostgreSQL's code)
        return [
            Drop(
                "CONSTRAINT",
                node.get("name", ""),
                ".".join(strings(node.get("typeName"))),
                bool(node.get("missing_ok")),
                cascade=node.get("behavior") == "DROP_CASCADE",
                table_kind="DOMAIN",
            )
        ]
    if stmt.node_type == "AlterTableStmt" and node.get("objtype") == "OBJECT_TYPE":  # ALTER TYPE t DROP ATTRIBUTE a
        cmds = [cmd.get("AlterTableCmd", {}) for cmd in node.get("cmds") or []]
        return [
            Drop(
                "ATTRIBUTE",
                c.get("name", ""),
                relation_name(node.get("relation")),
                bool(c.get("missing_ok")),
                cascade=c.get("behavior") == "DROP_CASCADE",
                table_kind="TYPE",
            )
            for c in cmds
            if c.get("subtype") == "AT_DropColumn"
        ]
    out = []
    for action in alter_actions(stmt):
        if action.subtype in ("AT_DropColumn", "AT_DropConstraint"):
            kind = "COLUMN" if action.subtype == "AT_DropColumn" else "CONSTRAINT"
            out.append(Drop(kind, action.name, action.table, action.missing_ok, cascade=action.cascade))
    return out


@dataclass(frozen=True)
class AlterAction:
    """One action of an ``ALTER TABLE`` (PostgreSQL's ``AlterTableCmd``)."""

    table: str
    subtype: str  # AT_AddColumn, AT_SetNotNull, AT_AddConstraint, ...
    name: str  # the column or constraint named by the action
    missing_ok: bool
    cascade: bool
    definition: dict  # the ColumnDef or Constraint node, {} if none
    inline_column: str = ""  # for a constraint written on an added column (ADD COLUMN c int UNIQUE): that column

    @property
    def constraint(self) -> dict:
        return self.definition.get("Constraint", {})

    @property
    def column_def(self) -> dict:
        return self.definition.get("ColumnDef", {})

    @property
    def column(self) -> str:
        return self.column_def.get("colname") or self.name

    @property
    def constraint_type(self) -> str:
        """``FOREIGN KEY``, ``CHECK``, ``UNIQUE``, ``PRIMARY KEY``, ``EXCLUDE``... for AT_AddConstraint."""
        contype = self.constraint.get("contype", "")
        return {
            "CONSTR_FOREIGN": "FOREIGN KEY",
            "CONSTR_PRIMARY": "PRIMARY KEY",
            "CONSTR_UNIQUE": "UNIQUE",
            "CONSTR_CHECK": "CHECK",
            "CONSTR_EXCLUSION": "EXCLUDE",
            "CONSTR_NOTNULL": "NOT NULL",
        }.get(contype, contype)


@per_statement(kinds=frozenset({"AlterTableStmt"}))
def alter_actions(stmt: SqlStatement) -> list[AlterAction]:
    """The actions of an ``ALTER TABLE`` (also when sqlglot gave up on it), else ``[]``."""
    if stmt.node_type != "AlterTableStmt" or stmt.node.get("objtype", "OBJECT_TABLE") != "OBJECT_TABLE":
        return []
    table = relation_name(stmt.node.get("relation"))
    out = []
    for cmd in stmt.node.get("cmds") or []:
        c = cmd.get("AlterTableCmd", {})
        out.append(
            AlterAction(
                table,
                c.get("subtype", ""),
                c.get("name", ""),
                bool(c.get("missing_ok")),
                c.get("behavior") == "DROP_CASCADE",
                c.get("def") or {},
            )
        )
    return out


_TABLE_CONSTRAINTS = {"CONSTR_FOREIGN", "CONSTR_CHECK", "CONSTR_UNIQUE", "CONSTR_PRIMARY", "CONSTR_EXCLUSION"}


@per_statement(kinds=frozenset({"AlterTableStmt"}))  # from alter_actions
def added_constraints(stmt: SqlStatement) -> list[AlterAction]:
    """Every constraint an ALTER TABLE adds, as ``AT_AddConstraint`` actions: ``ADD CONSTRAINT ...``
    and those written on an added column (``ADD COLUMN c bigint REFERENCES t (id)``, ``... UNIQUE``),
    which scan the table or build an index just the same."""
    out = []
    for action in alter_actions(stmt):
        if action.subtype == "AT_AddConstraint":
            out.append(action)
        elif action.subtype == "AT_AddColumn":
            for item in action.column_def.get("constraints") or []:
                constraint = item.get("Constraint", {})
                if constraint.get("contype") in _TABLE_CONSTRAINTS:
                    out.append(
                        AlterAction(
                            action.table,
                            "AT_AddConstraint",
                            action.column,
                            action.missing_ok,
                            action.cascade,
                            item,
                            inline_column=action.column,
                        )
                    )
    return out


def column_constraints(column_def: dict) -> set[str]:
    """The constraint types on a ``ColumnDef`` node: ``{"CONSTR_NOTNULL", "CONSTR_DEFAULT", ...}``."""
    return {c.get("Constraint", {}).get("contype", "") for c in column_def.get("constraints") or []}


def column_def_text(stmt: SqlStatement, column_def: dict) -> str:
    """The user's own text of a column's name and type (``"amount numeric(12,2)"``), for hints."""
    location = column_def.get("location")
    if location is None:
        return column_def.get("colname", "")
    start = stmt.text_index(location)
    constraint_starts = [
        stmt.text_index(c["Constraint"]["location"])
        for c in column_def.get("constraints") or []
        if "location" in c.get("Constraint", {})
    ]
    end = min(constraint_starts) if constraint_starts else _top_level_comma(stmt.text, start)
    return " ".join(stmt.text[start:end].split())


def clause_text(stmt: SqlStatement, node: dict) -> str:
    """The user's own text of one ALTER TABLE clause (``CONSTRAINT x EXCLUDE USING gist (...)``), from
    ``node``'s location to the next top-level comma, for hints; ``""`` when the node has no location."""
    location = node.get("location")
    if location is None:
        return ""
    start = stmt.text_index(location)
    return " ".join(stmt.text[start : _top_level_comma(stmt.text, start)].split())


def _top_level_comma(text: str, start: int) -> int:
    """Index of the first ``,`` outside parentheses after ``start`` (``numeric(12, 2)`` stays whole), else the end."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth <= 0:
            return index
    return len(text)


@per_statement
def target_table(stmt: SqlStatement) -> str:
    """The table a statement acts on, when it acts on one (``""`` otherwise)."""
    node = stmt.node
    if "relation" in node and isinstance(node["relation"], dict):
        return relation_name(node["relation"])
    if stmt.node_type == "CreatePolicyStmt":
        return relation_name(node.get("table"))
    if stmt.node_type in ("DeleteStmt", "UpdateStmt", "InsertStmt"):
        return relation_name(node.get("relation"))
    return ""


@per_statement
def created_table(stmt: SqlStatement) -> str:
    """The table a ``CREATE TABLE``, ``CREATE TABLE AS`` (or materialized view) or ``SELECT ... INTO t``
    statement creates, else ``""``."""
    if stmt.node_type == "CreateStmt":
        return relation_name(stmt.node.get("relation"))
    if stmt.node_type == "CreateTableAsStmt":
        return relation_name(stmt.node.get("into", {}).get("rel"))
    if stmt.node_type == "SelectStmt":
        select = stmt.node
        while select.get("op", "SETOP_NONE") != "SETOP_NONE":  # SELECT ... INTO t ... UNION ...: INTO is on the left
            select = select.get("larg") or {}
        return relation_name(select.get("intoClause", {}).get("rel"))
    return ""


def function_calls(node: Any) -> Iterator[str]:
    """Names of every function called anywhere under a parse-tree node (unqualified, folded by PostgreSQL:
    ``NOW()`` is ``now``, ``"Now"()`` another function)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            call = item.get("FuncCall") or item.get("funccall")  # CALL p(): CallStmt's funccall
            if isinstance(call, dict):
                names = strings(call.get("funcname"))
                if names:
                    yield names[-1]
            if "SQLValueFunction" in item:
                yield item["SQLValueFunction"].get("op", "").lower()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def option_enabled(def_elems: list | None, name: str) -> bool:
    """True when option ``name`` of a ``(FULL, CONCURRENTLY false, ...)`` list is on.

    PostgreSQL's ``defGetBoolean``: the bare option, ``true``/``on``/``1`` are on;
    ``false``/``off``/``0`` are off (``REINDEX (CONCURRENTLY false)`` is a plain REINDEX).
    """
    for item in def_elems or []:
        elem = item.get("DefElem", {})
        if elem.get("defname") != name:
            continue
        arg = elem.get("arg")
        if not arg:
            return True
        if "String" in arg:
            return arg["String"].get("sval", "").lower() not in ("false", "off", "0", "no")
        if "Integer" in arg:
            return bool(arg["Integer"].get("ival", 0))
        if "Boolean" in arg:
            return bool(arg["Boolean"].get("boolval"))
        return True
    return False


def column_type(type_name: dict):
    """A ``TypeName`` node as a :class:`safemig.lint.catalog.ColumnType`: ``varchar(20)`` -> ``("varchar", (20,))``."""
    from safemig.lint.catalog import ColumnType

    names = strings(type_name.get("names"))
    modifiers = []
    for mod in type_name.get("typmods") or []:
        value = mod.get("A_Const", {}).get("ival")
        if not isinstance(value, dict):  # not an integer constant: unknown modifiers
            return ColumnType(names[-1] if names else "", (), bool(type_name.get("arrayBounds")))
        modifiers.append(int(value.get("ival", 0)))
    return ColumnType(names[-1] if names else "", tuple(modifiers), bool(type_name.get("arrayBounds")))


def column_default(column_def: dict) -> dict | None:
    """The DEFAULT expression of a ``ColumnDef`` (``None`` without one, or for ``DEFAULT NULL``)."""
    for item in column_def.get("constraints") or []:
        constraint = item.get("Constraint", {})
        if constraint.get("contype") != "CONSTR_DEFAULT":
            continue
        expr = constraint.get("raw_expr") or {}
        inner = expr
        while "TypeCast" in inner:
            inner = inner["TypeCast"].get("arg") or {}
        return None if inner.get("A_Const", {}).get("isnull") else expr
    return None


def is_temporary(stmt: SqlStatement) -> bool:
    """True for ``CREATE TEMP TABLE`` (and temporary CREATE TABLE AS): it lives for one session at most,
    so a re-run of the migration creates it afresh."""
    if stmt.node_type == "CreateStmt":
        return stmt.node.get("relation", {}).get("relpersistence") == "t"
    if stmt.node_type == "CreateTableAsStmt":
        return stmt.node.get("into", {}).get("rel", {}).get("relpersistence") == "t"
    return False


SERIALS = {"serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"}  # nextval() for every row


_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")


@functools.lru_cache(maxsize=4096)  # the same few names, asked for every hint (26,000 times on a large corpus)
def quote_ident(name: str) -> str:
    """Quote an identifier for a hint only when PostgreSQL needs it."""
    if _PLAIN_IDENT.fullmatch(name or ""):
        return name
    return '"' + (name or "").replace('"', '""') + '"'


def qualified(name: str) -> str:
    """``schema.Table`` -> ``schema."Table"``: a dotted name ready to paste."""
    return ".".join(quote_ident(part) for part in name.split(".")) if name else name


@dataclass(frozen=True)
class ColumnFact:
    """A column defined by CREATE TABLE or ALTER TABLE ... ADD COLUMN."""

    table: str
    name: str
    type_name: str  # base type as PostgreSQL folded it: "json", "bigserial", "int4", ...
    added: bool  # True for ADD COLUMN, False for CREATE TABLE
    generated_stored: bool
    identity: bool


def _column(table: str, coldef: dict, added: bool) -> ColumnFact:
    names = strings(coldef.get("typeName", {}).get("names"))
    type_name = names[-1] if names else ""
    contypes = column_constraints(coldef)
    stored = any(
        c.get("Constraint", {}).get("contype") == "CONSTR_GENERATED"
        and c["Constraint"].get("generated_kind", "s") != "v"  # PostgreSQL 18's virtual columns store nothing
        for c in coldef.get("constraints") or []
    )
    return ColumnFact(
        table,
        coldef.get("colname", ""),
        type_name,
        added,
        stored,
        "CONSTR_IDENTITY" in contypes,
    )


@per_statement(kinds=frozenset({"CreateStmt", "AlterTableStmt"}))
def columns(stmt: SqlStatement) -> list[ColumnFact]:
    """Columns a statement defines (CREATE TABLE, ALTER TABLE ... ADD COLUMN), from PostgreSQL's tree.

    The type is as written before PostgreSQL resolves it (``serial`` stays ``serial``,
    ``int`` is ``int4``), which is what the serial and json rules need to see.
    """
    if stmt.node_type == "CreateStmt":
        table = relation_name(stmt.node.get("relation"))
        return [_column(table, e["ColumnDef"], False) for e in stmt.node.get("tableElts") or [] if "ColumnDef" in e]
    return [_column(a.table, a.column_def, True) for a in alter_actions(stmt) if a.subtype == "AT_AddColumn"]


@dataclass
class DoBlock:
    """What a ``DO`` block (or a routine's body) runs: the SQL statements of its body, and what safemig cannot see."""

    statements: list[SqlStatement]  # the body's static SQL (and EXECUTE of a string literal, PERFORM, CALL), parsed
    opaque: list[str]  # why part of it cannot be reviewed (EXECUTE of a computed string, ...)


_DYNAMIC = ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors")
_CALLS = ("PLpgSQL_stmt_perform", "PLpgSQL_stmt_call")  # PERFORM f() (as SELECT f()), CALL p()


def _parsed_sql(stmt: SqlStatement, text: str) -> list[SqlStatement] | None:
    """``text`` (SQL from a body) parsed by PostgreSQL's parser into statements located at ``stmt``, or None."""
    from pglast import parser

    try:
        items = json_tree(parser.parse_sql_json(text)).get("stmts") or []
    except (parser.ParseError, RecursionError, ValueError):
        return None
    return [
        SqlStatement(stmt.raw, node_type=node_type, node=node)
        for item in items
        for node_type, node in item["stmt"].items()
    ]


def _embedded_sql(stmt: SqlStatement, query: str) -> SqlStatement | None:
    """``query`` (one statement of a DO body) parsed by PostgreSQL's parser, located at ``stmt``."""
    parsed = _parsed_sql(stmt, query)
    return parsed[0] if parsed is not None and len(parsed) == 1 else None


def _string_literal(expression: str) -> str | None:
    """The value of ``expression`` when it is a plain string literal (``'DROP TABLE t'``), else None."""
    from pglast import parser

    try:
        items = json_tree(parser.parse_sql_json(f"SELECT {expression}")).get("stmts") or []
        target = items[0]["stmt"]["SelectStmt"]["targetList"]
        (only,) = target
        value = only["ResTarget"]["val"]["A_Const"]["sval"]["sval"]
    except (parser.ParseError, RecursionError, ValueError, KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _options(def_elems: list | None) -> dict[str, str]:
    """``LANGUAGE x`` / ``AS 'body'`` options of a DO or CREATE FUNCTION node: ``{"language": "x", "as": "body"}``."""
    out = {}
    for item in def_elems or []:
        elem = item.get("DefElem", {})
        arg = elem.get("arg", {})
        values = strings(arg["List"].get("items")) if "List" in arg else [arg.get("String", {}).get("sval", "")]
        out[elem.get("defname", "")] = values[0] if values else ""
    return out


def _plpgsql_body(stmt: SqlStatement, create_function: str) -> DoBlock:
    """The statements the PL/pgSQL body of ``create_function`` (a CREATE FUNCTION statement's text) runs."""
    from pglast import parser

    try:
        tree = json_tree(parser.parse_plpgsql_json(create_function))
    except (parser.ParseError, RecursionError, ValueError) as exc:
        return DoBlock([], [f"a body PL/pgSQL cannot parse ({exc.args[0] if exc.args else exc})"])
    statements: list[SqlStatement] = []
    opaque: list[str] = []
    stack: list[Any] = [tree]
    while stack:  # depth first, in the body's order
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if key == "PLpgSQL_stmt_execsql":
                query = value.get("sqlstmt", {}).get("PLpgSQL_expr", {}).get("query", "")
                parsed = _embedded_sql(stmt, query)
                if parsed is None:
                    opaque.append(f"a statement safemig cannot parse ({query[:60]})")
            elif key in _DYNAMIC:
                expression = value.get("query", {}).get("PLpgSQL_expr", {}).get("query", "")
                literal = _string_literal(expression)
                parsed = _embedded_sql(stmt, literal) if literal is not None else None
                if parsed is None:
                    opaque.append(f"EXECUTE {expression[:60]}")
            elif key in _CALLS:  # only for the routines it calls: nothing of its own to review
                parsed = _embedded_sql(stmt, value.get("expr", {}).get("PLpgSQL_expr", {}).get("query", ""))
            else:
                continue
            if parsed is not None:
                statements.append(parsed)
        stack.extend(reversed([v for v in item.values() if isinstance(v, (dict, list))]))
    return DoBlock(statements, opaque)


@per_statement
def do_block(stmt: SqlStatement) -> DoBlock:
    """The statements a ``DO`` block executes (read with PostgreSQL's PL/pgSQL parser), else empty.

    A DROP inside a DO block runs when the migration runs (unlike one inside a function
    body), so the rules about destroying data must see it. What cannot be read (another
    language, EXECUTE of a computed string, a body PL/pgSQL rejects) is listed in ``opaque``.
    """
    if stmt.node_type != "DoStmt":
        return DoBlock([], [])
    options = _options(stmt.node.get("args"))
    language, body = (options.get("language") or "plpgsql").lower(), options.get("as") or ""
    if language != "plpgsql":
        return DoBlock([], [f"LANGUAGE {language}"])
    tag = "$safemig$"
    while tag in body:
        tag = tag[:-1] + "_$"
    return _plpgsql_body(stmt, f"CREATE FUNCTION safemig_do() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}")


def routine_name(stmt: SqlStatement) -> str:
    """The unqualified name of the function or procedure a CREATE FUNCTION / PROCEDURE creates, else ``""``."""
    names = strings(stmt.node.get("funcname")) if stmt.node_type == "CreateFunctionStmt" else []
    return names[-1] if names else ""


@per_statement
def routine_body(stmt: SqlStatement) -> DoBlock:
    """What the function or procedure a CREATE FUNCTION / PROCEDURE creates runs when called (like :func:`do_block`).

    Read for LANGUAGE plpgsql and sql (a string body or BEGIN ATOMIC); another language is
    ``opaque``. The body runs with the migration only if the migration calls it: see
    :meth:`safemig.lint.context.LintFile.executed`.
    """
    if stmt.node_type != "CreateFunctionStmt":
        return DoBlock([], [])
    atomic = stmt.node.get("sql_body")
    if atomic:  # BEGIN ATOMIC ... END: PostgreSQL parsed the statements already
        return DoBlock(
            [
                SqlStatement(stmt.raw, node_type=node_type, node=node)
                for block in atomic.get("List", {}).get("items") or []
                for item in block.get("List", {}).get("items") or []
                for node_type, node in item.items()
            ],
            [],
        )
    options = _options(stmt.node.get("options"))
    language = (options.get("language") or "sql").lower()
    if language == "plpgsql":
        return _plpgsql_body(stmt, stmt.text)
    if language == "sql":
        parsed = _parsed_sql(stmt, options.get("as") or "")
        return DoBlock(parsed, []) if parsed is not None else DoBlock([], ["a body safemig cannot parse"])
    return DoBlock([], [f"LANGUAGE {language}"])


def executed(stmt: SqlStatement) -> list[SqlStatement]:
    """``stmt`` itself, and for a DO block also the statements its body runs.

    Rules should ask :meth:`safemig.lint.context.LintFile.executed`, which also knows the
    bodies of the functions the file created and ``stmt`` calls.
    """
    return [stmt, *do_block(stmt).statements] if stmt.node_type == "DoStmt" else [stmt]
