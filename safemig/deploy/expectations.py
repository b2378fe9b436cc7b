"""Which table lock each statement of a migration will take, read from the SQL before it runs.

The runbook is written before the window, when no rehearsal has run yet, so it predicts
locks from PostgreSQL's own parse tree (via :mod:`safemig.lint.parse`) using the lock
levels documented for each command (PostgreSQL manual, "Explicit Locking" and each
command's page). It is an expectation, stated as one: a ``DO`` block or a function call
can lock anything, and the staging rehearsal records what really happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from safemig.lint import facts
from safemig.lint.parse import SqlStatement, parse_sql

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"

# ALTER TABLE actions documented to take less than ACCESS EXCLUSIVE.
_ALTER_LESSER = {
    "AT_ValidateConstraint": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetStatistics": SHARE_UPDATE_EXCLUSIVE,
    "AT_ClusterOn": SHARE_UPDATE_EXCLUSIVE,
    "AT_DropCluster": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_ResetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_AttachPartition": SHARE_UPDATE_EXCLUSIVE,
    "AT_EnableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableAlwaysTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableReplicaTrig": SHARE_ROW_EXCLUSIVE,
}
_MODES_BY_NUMBER = {
    1: "ACCESS SHARE",
    2: "ROW SHARE",
    3: "ROW EXCLUSIVE",
    4: SHARE_UPDATE_EXCLUSIVE,
    5: "SHARE",
    6: SHARE_ROW_EXCLUSIVE,
    7: "EXCLUSIVE",
    8: ACCESS_EXCLUSIVE,
}
_ORDER = list(_MODES_BY_NUMBER.values())


@dataclass(frozen=True)
class LockExpectation:
    """One statement's expected lock: on which table, in which mode, and what that blocks."""

    line: int
    statement: str
    table: str
    mode: str
    new_table: bool = False  # created earlier in this deploy: nobody else can be using it
    note: str = ""

    @property
    def blocks(self) -> str:
        if self.new_table:
            return "nobody (table created by this deploy)"
        return {
            ACCESS_EXCLUSIVE: "all reads and writes",
            "EXCLUSIVE": "all writes and SELECT ... FOR UPDATE",
            SHARE_ROW_EXCLUSIVE: "all writes",
            "SHARE": "all writes",
            SHARE_UPDATE_EXCLUSIVE: "other schema changes and VACUUM only",
            "ROW EXCLUSIVE": "schema changes only (rows it changes stay locked until commit)",
        }.get(self.mode, "schema changes only")


def _strongest(modes: list[str]) -> str:
    return max(modes, key=_ORDER.index)


def _expect(stmt: SqlStatement) -> tuple[str, str, str] | None:
    """``(table, mode, note)`` for statements that lock a table; None for the rest."""
    kind, node = stmt.node_type, stmt.node
    if kind == "AlterTableStmt" and node.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE":
        actions = facts.alter_actions(stmt)
        modes = []
        for a in actions:
            if a.subtype == "AT_AddConstraint" and a.constraint_type == "FOREIGN KEY":
                modes.append(SHARE_ROW_EXCLUSIVE)
            else:
                modes.append(_ALTER_LESSER.get(a.subtype, ACCESS_EXCLUSIVE))
        return facts.relation_name(node.get("relation")), _strongest(modes or [ACCESS_EXCLUSIVE]), ""
    if kind == "IndexStmt":
        concurrent = bool(node.get("concurrent"))
        return (
            facts.relation_name(node.get("relation")),
            SHARE_UPDATE_EXCLUSIVE if concurrent else "SHARE",
            "" if concurrent else "builds the index while writes wait",
        )
    if kind == "CreateTrigStmt":
        return facts.relation_name(node.get("relation")), SHARE_ROW_EXCLUSIVE, ""
    if kind in ("CreatePolicyStmt", "AlterPolicyStmt", "RenameStmt", "ClusterStmt"):
        table = facts.target_table(stmt)
        return (table, ACCESS_EXCLUSIVE, "") if table else None
    if kind == "TruncateStmt":
        return next(((d.table or d.name, ACCESS_EXCLUSIVE, "") for d in facts.drops(stmt)), None)
    if kind == "DropStmt":
        for d in facts.drops(stmt):
            if d.kind == "INDEX":
                return d.table or d.name, SHARE_UPDATE_EXCLUSIVE if d.concurrently else ACCESS_EXCLUSIVE, ""
            if d.kind in ("TABLE", "POLICY", "TRIGGER", "VIEW", "MATERIALIZED VIEW"):
                return d.table or d.name, ACCESS_EXCLUSIVE, ""
        return None
    if kind == "LockStmt":
        table = next((facts.relation_name(r.get("RangeVar")) for r in node.get("relations") or []), "")
        return (table, _MODES_BY_NUMBER.get(node.get("mode", 8), ACCESS_EXCLUSIVE), "explicit LOCK") if table else None
    if kind in ("UpdateStmt", "DeleteStmt", "InsertStmt"):
        return facts.target_table(stmt), "ROW EXCLUSIVE", "plus row locks on every row it changes"
    if kind == "VacuumStmt":
        full = any(o.get("DefElem", {}).get("defname") == "full" for o in node.get("options") or [])
        table = next(
            (facts.relation_name(r.get("VacuumRelation", {}).get("relation")) for r in node.get("rels") or []), ""
        )
        return (table or "(every table)", ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE, "")
    if kind == "RefreshMatViewStmt":
        return (
            facts.relation_name(node.get("relation")),
            "EXCLUSIVE" if node.get("concurrent") else ACCESS_EXCLUSIVE,
            "",
        )
    if kind == "DoStmt":
        return "(anything)", "unknown", "a DO block can lock anything: see the staging rehearsal's lock report"
    return None


def expected_locks(sql: str, created_before: set[str] | None = None) -> list[LockExpectation]:
    """Expected table locks of a migration's statements, in order.

    ``created_before`` holds tables created by earlier migrations of the same deploy; it
    is extended with the tables this one creates (so later statements on them block nobody).
    """
    created = created_before if created_before is not None else set()
    out = []
    for stmt in parse_sql(sql).statements:
        if stmt.node_type is None:
            continue
        new = facts.created_table(stmt)
        if new:
            created.add(facts.bare(new))
            continue
        found = _expect(stmt)
        if found is None:
            continue
        table, mode, note = found
        out.append(LockExpectation(stmt.line, stmt.first_line, table, mode, facts.bare(table) in created, note))
    return out
