"""A statement that takes a write-blocking lock on an existing table with no ``SET lock_timeout`` before it.

ACCESS EXCLUSIVE (most ALTER TABLE, DROP, RENAME, TRUNCATE, ...) blocks reads and writes;
SHARE (CREATE INDEX without CONCURRENTLY) and SHARE ROW EXCLUSIVE (ADD FOREIGN KEY, also
NOT VALID, on both tables; CREATE TRIGGER) block writes. Not checked when the run knows the
env that applies the migration and safemig applies it (``safemig lint --env NAME``, the
deploy's lint gate): ``safemig migrate`` and ``safemig deploy`` always set that env's
``lock_timeout`` for the session, and the report says that the rule was skipped and why.

Why:
    A lock request waits behind every running query on the table, and every new query
    that conflicts with it then waits behind it: a one-millisecond ALTER turns into
    minutes of downtime. With a lock_timeout the migration gives up instead (and can be
    retried). Other runners (plain sqlx, Diesel) set none, which is why this is checked
    whenever the runner is not known to be safemig.

Bad:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;

Good:
    SET lock_timeout = '5s';
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
"""

from safemig.lint import facts

ID = "missing-lock-timeout"
SEVERITY = "warning"
SUMMARY = "ACCESS EXCLUSIVE / SHARE / SHARE ROW EXCLUSIVE lock on an existing table without SET lock_timeout first"

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


ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"


def _lock(stmt) -> tuple[str, str, str] | None:
    """``(lock mode, what is locked, its name)`` for a statement that takes a write-blocking lock, else None."""
    kind, node = stmt.node_type, stmt.node
    if kind == "IndexStmt" and not node.get("concurrent"):
        return SHARE, "table", facts.relation_name(node.get("relation"))
    if kind == "CreateTrigStmt":
        return SHARE_ROW_EXCLUSIVE, "table", facts.relation_name(node.get("relation"))
    if kind == "DropStmt":
        for d in facts.drops(stmt):
            if d.kind == "INDEX" and not d.concurrently:
                return ACCESS_EXCLUSIVE, "index", d.name  # and its table
            if d.kind in ("TABLE", "POLICY", "TRIGGER"):
                return ACCESS_EXCLUSIVE, "table", d.table or d.name
        return None
    if kind == "AlterTableStmt":
        actions = facts.alter_actions(stmt)
        if actions and all(
            a.subtype == "AT_AddConstraint" and a.constraint_type == "FOREIGN KEY" for a in actions
        ):  # SHARE ROW EXCLUSIVE on the table and the referenced one
            return SHARE_ROW_EXCLUSIVE, "table", facts.relation_name(node.get("relation"))
    table = _locked_table(stmt)
    if table is None:
        return None
    what = "index" if kind == "AlterTableStmt" and node.get("objtype") == "OBJECT_INDEX" else "table"
    return ACCESS_EXCLUSIVE, what, table


def _locked_table(stmt) -> str | None:
    """The existing table ``stmt`` takes an ACCESS EXCLUSIVE lock on, if it does."""
    kind, node = stmt.node_type, stmt.node
    if kind == "AlterTableStmt":
        actions = facts.alter_actions(stmt)
        if actions and all(a.subtype in _LESSER_ALTERS for a in actions):
            return None
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
    if kind == "LockStmt" and node.get("mode", 8) == 8:
        return next((facts.relation_name(r.get("RangeVar")) for r in node.get("relations") or []), None)
    if kind == "VacuumStmt" and facts.option_enabled(node.get("options"), "full"):
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


_BLOCKS = {
    ACCESS_EXCLUSIVE: "every read and write",
    SHARE: "every write",
    SHARE_ROW_EXCLUSIVE: "every write",
}


def check(file):
    if file.runner_lock_timeout:  # safemig applies it with the env's lock_timeout (the report notes the skip)
        return
    for stmt in file.valid_statements:
        if _sets_lock_timeout(stmt, file.no_transaction):
            return
        found = _lock(stmt)
        if not found:
            continue
        mode, what, name = found
        if what == "index":
            if file.is_new_index(name, stmt):
                continue
        elif not name or file.is_new_table(name, stmt):
            continue
        on = f"index {name} (and its table)" if what == "index" else name
        yield file.violation(
            stmt,
            f"takes {'an' if mode == ACCESS_EXCLUSIVE else 'a'} {mode} lock on {on} with no lock_timeout: it can "
            "queue behind a long query and, while it "
            f"waits, block {_BLOCKS[mode]} on {'the table' if what == 'index' else name}",
            "put SET lock_timeout = '5s'; before the first statement of the migration (and retry on timeout), "
            "or apply it with safemig migrate/deploy, which set the env's lock_timeout",
        )
        return
