"""BEGIN / COMMIT / ROLLBACK inside a migration that sqlx already runs in a transaction.

Why:
    sqlx wraps each migration (unless ``-- no-transaction``) in a transaction that also
    records it in ``_sqlx_migrations``. A COMMIT inside ends that transaction early: the
    statements after it, and the ledger row, run outside it, so a failure leaves the
    migration half-applied and unrecorded.

Bad:
    BEGIN;
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
    COMMIT;

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
"""

ID = "transaction-control"
SEVERITY = "error"
SUMMARY = "BEGIN/COMMIT/ROLLBACK inside a migration sqlx runs in its own transaction"
KINDS = {"TransactionStmt"}  # the statements it judges (registry.py)

_CONTROL = {
    "TRANS_STMT_BEGIN",
    "TRANS_STMT_START",
    "TRANS_STMT_COMMIT",
    "TRANS_STMT_ROLLBACK",
    "TRANS_STMT_PREPARE",
    "TRANS_STMT_COMMIT_PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED",
}


def check(file):
    if file.no_transaction:
        return
    for stmt in file.statements_of(KINDS):
        if stmt.node_type == "TransactionStmt" and stmt.node.get("kind") in _CONTROL:
            yield file.violation(
                stmt,
                f"{stmt.first_line.rstrip(';').upper()} inside a migration that sqlx already runs in a transaction",
                "remove it: the migration is atomic as it is (or make `-- no-transaction` the first "
                "line if it must manage its own transactions)",
            )
