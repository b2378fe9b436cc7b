"""CONCURRENTLY in a migration that runs inside a transaction.

sqlx runs each migration in a transaction unless its first line is ``-- no-transaction``.

Why:
    CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and ALTER TABLE ... DETACH
    PARTITION ... CONCURRENTLY cannot run inside a transaction block: PostgreSQL rejects
    the migration at deploy time. (REFRESH
    MATERIALIZED VIEW CONCURRENTLY can, and is not flagged.) VACUUM cannot either, and is
    flagged here too.

Bad:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_customer_id ON orders (customer_id);

Good:
    -- no-transaction
    CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_customer_id ON orders (customer_id);
"""

from safemig.lint import facts

ID = "concurrently-in-transaction"
SEVERITY = "error"
SUMMARY = (
    "CONCURRENTLY (index, REINDEX, DETACH PARTITION) or VACUUM in a file without `-- no-transaction` "
    "(fails inside sqlx's transaction)"
)
KINDS = {"IndexStmt", "ReindexStmt", "VacuumStmt", "AlterTableStmt", "DropStmt"}  # the statements it judges


def _concurrent(stmt) -> bool:
    if stmt.node_type == "IndexStmt":
        return bool(stmt.node.get("concurrent"))
    if stmt.node_type == "ReindexStmt":
        return facts.option_enabled(stmt.node.get("params"), "concurrently")
    if any(
        a.subtype == "AT_DetachPartition" and a.definition.get("PartitionCmd", {}).get("concurrent")
        for a in facts.alter_actions(stmt)
    ):
        return True
    return any(d.concurrently for d in facts.drops(stmt))


def check(file):
    if file.no_transaction:
        return
    for stmt in file.statements_of(KINDS):
        if _concurrent(stmt):
            yield file.violation(
                stmt,
                "CONCURRENTLY cannot run inside the transaction sqlx wraps this migration in",
                "make `-- no-transaction` the first line of the file (and keep one CONCURRENTLY "
                "statement per migration so a failure leaves nothing half-done)",
            )
        elif stmt.node_type == "VacuumStmt" and stmt.node.get("is_vacuumcmd"):  # ANALYZE alone is fine
            yield file.violation(
                stmt,
                "VACUUM cannot run inside the transaction sqlx wraps this migration in",
                "make `-- no-transaction` the first line of the file, or run VACUUM outside the "
                "migration (ANALYZE alone may stay: it runs inside a transaction)",
            )
