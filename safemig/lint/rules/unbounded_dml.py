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


def check(file):
    from sqlglot import exp

    from safemig.lint import facts

    for stmt in file.valid_statements:
        if stmt.node_type not in ("DeleteStmt", "UpdateStmt"):
            continue
        ast = stmt.ast
        if isinstance(ast, (exp.Delete, exp.Update)):
            has_where = ast.args.get("where") is not None
        else:  # sqlglot gave up: PostgreSQL's tree is exact
            has_where = bool(stmt.node.get("whereClause"))
        table = facts.target_table(stmt)
        if has_where or file.is_new_table(table, stmt):
            continue
        verb = "DELETE" if stmt.node_type == "DeleteStmt" else "UPDATE"
        example = f"DELETE FROM {facts.qualified(table)}" if verb == "DELETE" else f"UPDATE {facts.qualified(table)} SET ..."
        yield file.violation(stmt, f"{verb} without WHERE touches every row of {table}",
                             f"add a WHERE clause; for a backfill, {example} WHERE id BETWEEN "
                             f"<from> AND <to> in batches (outside the migration, or one batch per migration)")
