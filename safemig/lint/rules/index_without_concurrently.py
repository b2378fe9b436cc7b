"""CREATE INDEX or DROP INDEX without CONCURRENTLY on an existing table.

Why:
    A plain CREATE INDEX holds a SHARE lock for the whole build, blocking every write
    to the table; DROP INDEX takes an ACCESS EXCLUSIVE lock. On a busy table that is an
    outage. CONCURRENTLY builds/drops without blocking writes (it must run outside a
    transaction: start the file with ``-- no-transaction``).

Bad:
    CREATE INDEX IF NOT EXISTS idx_orders_customer_id ON orders (customer_id);

Good:
    -- no-transaction
    CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_customer_id ON orders (customer_id);
"""

import re

from safemig.lint import facts

_CREATE_INDEX = re.compile(
    r"^CREATE\s+(UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?", re.IGNORECASE
)

ID = "index-without-concurrently"
SEVERITY = "error"
SUMMARY = "CREATE/DROP INDEX without CONCURRENTLY blocks writes on an existing table"
KINDS = {"IndexStmt", "DropStmt"}  # the statements it judges (registry.py)


def check(file):
    created: set[str] = set()  # indexes the statements before this one created (new, so cheap to drop)
    for stmt in file.statements_of(KINDS):
        node = stmt.node
        if stmt.node_type == "IndexStmt":  # (a CREATE INDEX drops nothing: adding it first changes nothing for it)
            created.add(node.get("idxname") or "")
        if stmt.node_type == "IndexStmt" and not node.get("concurrent"):
            table = facts.relation_name(node.get("relation"))
            if file.is_new_table(table, stmt):
                continue
            name = node.get("idxname") or "<name>"
            unique = "UNIQUE " if node.get("unique") else ""
            concurrent = _CREATE_INDEX.sub(f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS ", stmt.text, count=1)
            yield file.violation(
                stmt,
                f"CREATE {unique}INDEX {name} on existing table {table} blocks writes while it builds",
                f"in a migration whose first line is `-- no-transaction`: {concurrent};",
            )
        for d in facts.drops(stmt):
            if d.kind == "INDEX" and not d.concurrently and facts.bare(d.name) not in created:
                yield file.violation(
                    stmt,
                    f"DROP INDEX {d.name} takes an ACCESS EXCLUSIVE lock on its table",
                    f"put `-- no-transaction` on the file's first line and write DROP INDEX CONCURRENTLY IF EXISTS "
                    f"{facts.qualified(d.name)}",
                )
