"""DELETE or UPDATE without a WHERE clause on an existing table.

Why:
    It touches every row in one transaction: long row locks, a burst of WAL, bloat, and
    usually not what was meant. Backfills belong in batches (by key range), and a table
    that must be emptied deserves an explicit, reviewed statement.

Bad:
    UPDATE orders SET currency = 'EUR';

Good:
    UPDATE orders SET currency = 'EUR' WHERE currency IS NULL AND id BETWEEN 1 AND 10000;
"""

ID = "unbounded-dml"
SEVERITY = "error"
SUMMARY = "DELETE / UPDATE without WHERE rewrites every row in one transaction"
KINDS = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}  # DML, and those with a WITH clause


def check(file):
    from safemig.lint import facts

    for stmt in file.valid_statements:
        for verb, inner in _in_with_clauses(stmt.node):  # WITH gone AS (DELETE FROM t RETURNING *) SELECT ...
            table = facts.relation_name(inner.get("relation"))
            if not inner.get("whereClause") and not file.is_new_table(table, stmt):
                yield file.violation(
                    stmt,
                    f"{verb} without WHERE (in a WITH clause) touches every row of {table}",
                    f"add a WHERE clause to the {verb} in the WITH clause, or batch it by key range",
                )
        if stmt.node_type not in ("DeleteStmt", "UpdateStmt"):
            continue
        table = facts.target_table(stmt)
        if stmt.node.get("whereClause") or file.is_new_table(table, stmt):
            continue
        verb = "DELETE" if stmt.node_type == "DeleteStmt" else "UPDATE"
        example = (
            f"DELETE FROM {facts.qualified(table)}" if verb == "DELETE" else f"UPDATE {facts.qualified(table)} SET ..."
        )
        yield file.violation(
            stmt,
            f"{verb} without WHERE touches every row of {table}",
            f"add a WHERE clause; for a backfill, {example} WHERE id BETWEEN "
            f"<from> AND <to> in batches (outside the migration, or one batch per migration)",
        )


def _in_with_clauses(node):
    """``(verb, node)`` for every DELETE / UPDATE inside a WITH clause of ``node`` (data-modifying CTEs)."""
    stack = [
        cte.get("CommonTableExpr", {}).get("ctequery", {}) for cte in (node.get("withClause") or {}).get("ctes") or []
    ]
    while stack:
        item = stack.pop()
        for kind, verb in (("DeleteStmt", "DELETE"), ("UpdateStmt", "UPDATE")):
            if kind in item:
                yield verb, item[kind]
        for inner in item.values():
            if isinstance(inner, dict):
                stack.extend(
                    cte.get("CommonTableExpr", {}).get("ctequery", {})
                    for cte in (inner.get("withClause") or {}).get("ctes") or []
                )
