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

ID = "reindex-without-concurrently"
SEVERITY = "error"
SUMMARY = "REINDEX without CONCURRENTLY blocks writes while it rebuilds"


def check(file):
    for stmt in file.valid_statements:
        if stmt.node_type != "ReindexStmt":
            continue
        params = [p.get("DefElem", {}).get("defname", "") for p in stmt.node.get("params") or []]
        if "concurrently" not in params:
            words = stmt.text.split(None, 2)
            rest = words[2] if len(words) > 2 else ""
            yield file.violation(
                stmt,
                "REINDEX without CONCURRENTLY blocks writes while it rebuilds",
                f"put `-- no-transaction` on the file's first line and write REINDEX "
                f"{words[1].upper() if len(words) > 1 else 'INDEX'} CONCURRENTLY {rest}",
            )
