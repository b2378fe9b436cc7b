"""Syntax the target PostgreSQL major cannot run (``[lint] pg_version``), though a newer one parses it.

Statements are parsed with the installed pglast's grammar (PostgreSQL 18's); this rule
knows the syntax added since PostgreSQL 14 that migrations use, and reports it when
``pg_version`` is older: MERGE and ``UNIQUE NULLS NOT DISTINCT`` (15); ``IS JSON``,
``JSON_OBJECT``/``JSON_ARRAY`` and their aggregates (16); ``MERGE ... RETURNING``, ``WHEN
NOT MATCHED BY SOURCE``, ``JSON_TABLE``, ``JSON_QUERY``/``JSON_VALUE``/``JSON_EXISTS``,
``JSON()``/``JSON_SCALAR``/``JSON_SERIALIZE`` and ``ALTER COLUMN ... SET EXPRESSION`` (17);
``NOT NULL`` as a table constraint (``ADD CONSTRAINT c NOT NULL col``), virtual generated
columns, ``NOT ENFORCED`` and ``WITHOUT OVERLAPS`` (18).

Why:
    The migration parses on a developer's machine and in review, then fails on the
    production server (``syntax error at or near ...``), possibly after earlier
    statements of a no-transaction migration already ran.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null NOT NULL currency;

Good:
    ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_currency_not_null,
        ADD CONSTRAINT orders_currency_not_null CHECK (currency IS NOT NULL) NOT VALID;
"""

import re

from safemig.lint import facts

ID = "unsupported-syntax"
SEVERITY = "error"
SUMMARY = "syntax newer than [lint] pg_version (e.g. ADD CONSTRAINT c NOT NULL col before PostgreSQL 18)"

_GRAMMAR = 18  # the PostgreSQL major whose grammar the installed pglast parses

_JSON_NODES = {
    "JsonIsPredicate": ("IS JSON", 16),
    "JsonObjectConstructor": ("JSON_OBJECT()", 16),
    "JsonArrayConstructor": ("JSON_ARRAY()", 16),
    "JsonArrayQueryConstructor": ("JSON_ARRAY(query)", 16),
    "JsonObjectAgg": ("JSON_OBJECTAGG()", 16),
    "JsonArrayAgg": ("JSON_ARRAYAGG()", 16),
    "JsonTable": ("JSON_TABLE", 17),
    "JsonFuncExpr": ("JSON_QUERY / JSON_VALUE / JSON_EXISTS", 17),
    "JsonParseExpr": ("JSON()", 17),
    "JsonScalarExpr": ("JSON_SCALAR()", 17),
    "JsonSerializeExpr": ("JSON_SERIALIZE()", 17),
}


_SQL_JSON = re.compile(r"\bjson(?:_\w+)?\s*\(|\bis\s+(?:not\s+)?json\b", re.IGNORECASE)


def _json_syntax(node) -> list[tuple[str, int]]:
    found = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _JSON_NODES:
                    found.append(_JSON_NODES[key])
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _constraint_syntax(constraint: dict, table_level: bool) -> list[tuple[str, int]]:
    out = []
    contype = constraint.get("contype")
    if contype == "CONSTR_NOTNULL" and table_level:
        out.append(("NOT NULL as a table constraint (CONSTRAINT c NOT NULL col)", 18))
    if contype in ("CONSTR_CHECK", "CONSTR_FOREIGN") and not constraint.get("is_enforced"):
        if not constraint.get("skip_validation") or "initially_valid" not in constraint:
            out.append(("NOT ENFORCED", 18))
    if constraint.get("without_overlaps"):
        out.append(("WITHOUT OVERLAPS", 18))
    if constraint.get("nulls_not_distinct"):
        out.append(("NULLS NOT DISTINCT", 15))
    if contype == "CONSTR_GENERATED" and constraint.get("generated_kind") == "v":
        out.append(("a virtual generated column (GENERATED ALWAYS AS (...) without STORED)", 18))
    return out


def _syntax(stmt) -> list[tuple[str, int]]:
    """``(feature, first major)`` for each newer feature ``stmt`` uses."""
    node, kind = stmt.node, stmt.node_type
    out: list[tuple[str, int]] = []
    if kind == "MergeStmt":
        out.append(("MERGE", 15))
        if node.get("returningClause") or node.get("returningList"):
            out.append(("MERGE ... RETURNING", 17))
        for clause in node.get("mergeWhenClauses") or []:
            if clause.get("MergeWhenClause", {}).get("matchKind") == "MERGE_WHEN_NOT_MATCHED_BY_SOURCE":
                out.append(("WHEN NOT MATCHED BY SOURCE", 17))
                break
    if kind == "IndexStmt" and node.get("nulls_not_distinct"):
        out.append(("NULLS NOT DISTINCT", 15))
    if kind == "CreateStmt":
        for element in node.get("tableElts") or []:
            if "Constraint" in element:
                out += _constraint_syntax(element["Constraint"], table_level=True)
            for item in element.get("ColumnDef", {}).get("constraints") or []:
                out += _constraint_syntax(item.get("Constraint", {}), table_level=False)
    for action in facts.alter_actions(stmt):
        if action.subtype == "AT_SetExpression":
            out.append(("ALTER COLUMN ... SET EXPRESSION", 17))
        elif action.subtype == "AT_AddConstraint":
            out += _constraint_syntax(action.constraint, table_level=True)
        elif action.subtype == "AT_AddColumn":
            for item in action.column_def.get("constraints") or []:
                out += _constraint_syntax(item.get("Constraint", {}), table_level=False)
    # cheap first: a case-insensitive regex tried at every position of every statement cost more than the
    # rest of the rule; most statements never say "json", and most that do are about jsonb columns
    if "json" in stmt.text.lower() and _SQL_JSON.search(stmt.text):
        out += _json_syntax(node)
    return out


def check(file):
    if file.pg_version >= _GRAMMAR:
        return
    for stmt in file.valid_statements:
        for feature, major in dict.fromkeys(_syntax(stmt)):
            if file.pg_version < major:
                yield file.violation(
                    stmt,
                    f"{feature} needs PostgreSQL {major}; the target ([lint] pg_version) is {file.pg_version}, "
                    f"which rejects this statement",
                    f"rewrite it for PostgreSQL {file.pg_version}, or set [lint] pg_version = {major} if every "
                    f"server that runs the migrations is {major} or newer",
                )
