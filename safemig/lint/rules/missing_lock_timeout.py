"""A statement that takes an ACCESS EXCLUSIVE lock on an existing table with no ``SET lock_timeout`` before it.

Why:
    An ACCESS EXCLUSIVE lock request waits behind every running query on the table, and
    every new query then waits behind it: a one-millisecond ALTER turns into minutes of
    downtime. With a lock_timeout the migration gives up instead (and can be retried).
    ``safemig deploy`` and ``safemig migrate --env`` set the env's lock_timeout for you,
    which is why this is a warning by default; other runners (plain sqlx) do not.

Bad:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;

Good:
    SET lock_timeout = '5s';
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
"""

from safemig.lint import facts

ID = "missing-lock-timeout"
SEVERITY = "warning"
SUMMARY = "ACCESS EXCLUSIVE lock on an existing table without SET lock_timeout first"

_LESSER_ALTERS = {
    "AT_ValidateConstraint",
    "AT_SetStatistics",
    "AT_SetOptions",
    "AT_ResetOptions",
    "AT_ClusterOn",
    "AT_DropCluster",
    "AT_EnableTrig",
    "AT_DisableTrig",
    "AT_EnableAlwaysTrig",
    "AT_EnableReplicaTrig",
    "AT_SetRelOptions",
    "AT_ResetRelOptions",
    "AT_AttachPartition",
}


def _locked_table(stmt) -> str | None:
    """The existing table ``stmt`` takes an ACCESS EXCLUSIVE lock on, if it does."""
    kind, node = stmt.node_type, stmt.node
    if kind == "AlterTableStmt":
        actions = facts.alter_actions(stmt)
        if actions and all(a.subtype in _LESSER_ALTERS for a in actions):
            return None
        if (
            any(a.subtype == "AT_AddConstraint" and a.constraint_type == "FOREIGN KEY" for a in actions)
            and len(actions) == 1
        ):
            return None  # SHARE ROW EXCLUSIVE
        objtype = node.get("objtype", "OBJECT_TABLE")
        if objtype in ("OBJECT_INDEX", "OBJECT_MATVIEW"):  # only SET TABLESPACE copies (and locks) these
            moved = any(c.get("AlterTableCmd", {}).get("subtype") == "AT_SetTableSpace" for c in node.get("cmds") or [])
            return facts.relation_name(node.get("relation")) if moved else None
        return facts.relation_name(node.get("relation")) if objtype == "OBJECT_TABLE" else None
    if kind == "AlterTableMoveAllStmt":
        return f"every relation in tablespace {node.get('orig_tablespacename', '?')}"
    if kind in ("RenameStmt", "CreatePolicyStmt", "AlterPolicyStmt"):
        return facts.target_table(stmt) or None
    if kind == "ClusterStmt":
        return facts.target_table(stmt) or "every table clustered before"
    if kind == "RefreshMatViewStmt" and not node.get("concurrent"):  # CONCURRENTLY takes an EXCLUSIVE lock: reads go on
        return facts.target_table(stmt) or None
    if kind == "TruncateStmt":
        return next((d.table for d in facts.drops(stmt)), None)
    if kind == "DropStmt":
        for d in facts.drops(stmt):
            if d.kind in ("TABLE", "POLICY", "TRIGGER") or (d.kind == "INDEX" and not d.concurrently):
                return d.table or d.name
        return None
    if kind == "LockStmt" and node.get("mode", 8) == 8:
        return next((facts.relation_name(r.get("RangeVar")) for r in node.get("relations") or []), None)
    if kind == "VacuumStmt" and any(o.get("DefElem", {}).get("defname") == "full" for o in node.get("options") or []):
        return next(
            (facts.relation_name(r.get("VacuumRelation", {}).get("relation")) for r in node.get("rels") or []), None
        )
    return None


def _sets_lock_timeout(stmt, no_transaction: bool) -> bool:
    if stmt.node_type == "VariableSetStmt":
        if no_transaction and stmt.node.get("is_local"):
            return False  # SET LOCAL outside a transaction block does nothing (PostgreSQL only warns)
        return stmt.node.get("name", "").lower() == "lock_timeout" and stmt.node.get("kind") != "VAR_RESET"
    if stmt.node_type == "SelectStmt":
        return "set_config" in facts.function_calls(stmt.node) and "lock_timeout" in stmt.text.lower()
    return False


def check(file):
    for stmt in file.valid_statements:
        if _sets_lock_timeout(stmt, file.no_transaction):
            return
        table = _locked_table(stmt)
        moves_new_index = (
            stmt.node_type == "AlterTableStmt"
            and stmt.node.get("objtype") == "OBJECT_INDEX"
            and file.is_new_index(table or "", stmt)
        )
        if table and not file.is_new_table(table, stmt) and not moves_new_index:
            yield file.violation(
                stmt,
                f"takes an ACCESS EXCLUSIVE lock on {table} with no lock_timeout: it can queue behind a long "
                f"query and block all traffic to {table}",
                "put SET lock_timeout = '5s'; before the first statement of the migration (and retry on timeout)",
            )
            return
