"""REINDEX without CONCURRENTLY.

Why:
    A plain REINDEX blocks writes to the table and reads that would use the index while
    it rebuilds. REINDEX ... CONCURRENTLY (PostgreSQL 12+) does not.

Bad:
    REINDEX INDEX idx_orders_customer_id;

Good:
    -- no-transaction
    REINDEX INDEX CONCURRENTLY idx_orders_customer_id;
"""

from safemig.lint import facts

ID = "reindex-without-concurrently"
SEVERITY = "error"
SUMMARY = "REINDEX without CONCURRENTLY blocks writes while it rebuilds"
KINDS = {"ReindexStmt"}  # the statements it judges (registry.py)


def check(file):
    for stmt in file.statements_of(KINDS):
        if stmt.node_type != "ReindexStmt":
            continue
        if not facts.option_enabled(stmt.node.get("params"), "concurrently"):  # (CONCURRENTLY false) is plain
            kind = stmt.node.get("kind", "REINDEX_OBJECT_INDEX").rsplit("_", 1)[-1]  # INDEX, TABLE, SCHEMA, ...
            target = facts.qualified(facts.relation_name(stmt.node.get("relation"))) or stmt.node.get("name", "")
            yield file.violation(
                stmt,
                "REINDEX without CONCURRENTLY blocks writes while it rebuilds",
                f"put `-- no-transaction` on the file's first line and write REINDEX {kind} CONCURRENTLY {target};",
            )
