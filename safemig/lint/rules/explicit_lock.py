"""An explicit LOCK TABLE in a migration.

Why:
    An explicit lock (usually ACCESS EXCLUSIVE) queues behind every running query and
    blocks every query queued behind it: a slow report turns a migration into an outage.
    PostgreSQL takes the locks each statement needs; if you truly need one, set a short
    lock_timeout first and say why in an ignore comment.

Bad:
    LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;

Good:
    SET lock_timeout = '5s';
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
"""

from safemig.lint import facts

ID = "explicit-lock"
SEVERITY = "warning"
SUMMARY = "explicit LOCK TABLE blocks the table and everything queued behind it"
KINDS = {"LockStmt"}  # the statements it judges (registry.py)


def check(file):
    for stmt in file.statements_of(KINDS):
        if stmt.node_type == "LockStmt":
            tables = ", ".join(facts.relation_name(r.get("RangeVar")) for r in stmt.node.get("relations") or [])
            yield file.violation(
                stmt,
                f"explicit LOCK on {tables}",
                "drop the LOCK and let each statement take the lock it needs; if it must stay, put "
                "SET lock_timeout = '5s'; before it so it gives up instead of queueing",
            )
