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
EXCLUSIVE = "EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
UNKNOWN = "unknown"

# ALTER TABLE actions documented to take less than ACCESS EXCLUSIVE (ALTER TABLE page, "Notes"
# and each action's paragraph; PostgreSQL's AlterTableGetLockLevel()).
_ALTER_LESSER = {
    "AT_ValidateConstraint": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetStatistics": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetOptions": SHARE_UPDATE_EXCLUSIVE,  # ALTER COLUMN SET (n_distinct = ...)
    "AT_ResetOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_ClusterOn": SHARE_UPDATE_EXCLUSIVE,
    "AT_DropCluster": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetRelOptions": SHARE_UPDATE_EXCLUSIVE,  # SET (fillfactor = ...), autovacuum and planner parameters
    "AT_ResetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_AttachPartition": SHARE_UPDATE_EXCLUSIVE,  # on the parent; the attached partition: ACCESS EXCLUSIVE
    "AT_EnableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableAlwaysTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableReplicaTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigAll": SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigUser": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigAll": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigUser": SHARE_ROW_EXCLUSIVE,
}
_MODES_BY_NUMBER = {
    1: "ACCESS SHARE",
    2: "ROW SHARE",
    3: ROW_EXCLUSIVE,
    4: SHARE_UPDATE_EXCLUSIVE,
    5: SHARE,
    6: SHARE_ROW_EXCLUSIVE,
    7: EXCLUSIVE,
    8: ACCESS_EXCLUSIVE,
}
MODE_ORDER = list(_MODES_BY_NUMBER.values())  # weakest to strongest
# COMMENT ON these takes SHARE UPDATE EXCLUSIVE on the relation (the column's table for a column).
_COMMENT_RELATIONS = {
    "OBJECT_TABLE",
    "OBJECT_COLUMN",
    "OBJECT_INDEX",
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_SEQUENCE",
    "OBJECT_FOREIGN_TABLE",
}


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
    return max(modes, key=MODE_ORDER.index)


Found = list[tuple[str, str, str]]  # (relation, mode, note)


def _foreign_keys(constraints: list[dict]) -> Found:
    """A foreign key also takes SHARE ROW EXCLUSIVE on the table it references."""
    return [
        (facts.relation_name(c.get("pktable")), SHARE_ROW_EXCLUSIVE, "the referenced table of a foreign key")
        for c in constraints
        if c.get("contype") == "CONSTR_FOREIGN" and c.get("pktable")
    ]


def _alter_table(stmt: SqlStatement) -> Found:
    table = facts.relation_name(stmt.node.get("relation"))
    modes, extra = [], []
    for a in facts.alter_actions(stmt):
        if a.subtype == "AT_AddConstraint" and a.constraint_type == "FOREIGN KEY":
            modes.append(SHARE_ROW_EXCLUSIVE)
            extra += _foreign_keys([a.constraint])
        elif a.subtype == "AT_DetachPartition":
            cmd = a.definition.get("PartitionCmd", {})
            mode = SHARE_UPDATE_EXCLUSIVE if cmd.get("concurrent") else ACCESS_EXCLUSIVE
            modes.append(mode)
            extra.append((facts.relation_name(cmd.get("name")), mode, "the partition detached"))
        elif a.subtype == "AT_AttachPartition":
            modes.append(SHARE_UPDATE_EXCLUSIVE)
            cmd = a.definition.get("PartitionCmd", {})
            extra.append((facts.relation_name(cmd.get("name")), ACCESS_EXCLUSIVE, "the partition attached"))
        else:
            if a.subtype == "AT_AddColumn":
                extra += _foreign_keys([c.get("Constraint", {}) for c in a.column_def.get("constraints") or []])
            modes.append(_ALTER_LESSER.get(a.subtype, ACCESS_EXCLUSIVE))
    return [(table, _strongest(modes or [ACCESS_EXCLUSIVE]), ""), *extra]


def _created_references(stmt: SqlStatement) -> Found:
    """CREATE TABLE ... REFERENCES other: SHARE ROW EXCLUSIVE on ``other``."""
    constraints = []
    for element in stmt.node.get("tableElts") or []:
        if "Constraint" in element:
            constraints.append(element["Constraint"])
        for c in element.get("ColumnDef", {}).get("constraints") or []:
            constraints.append(c.get("Constraint", {}))
    return _foreign_keys(constraints)


def _comment(node: dict) -> Found:
    objtype = node.get("objtype", "")
    if objtype not in _COMMENT_RELATIONS:
        return []  # a function, type, constraint ...: locked as an object, not as a relation
    names = [i.get("String", {}).get("sval", "") for i in node.get("object", {}).get("List", {}).get("items") or []]
    if objtype == "OBJECT_COLUMN":
        names = names[:-1]
    return [(".".join(names), SHARE_UPDATE_EXCLUSIVE, "")] if names else []


def _reindex(node: dict) -> Found:
    concurrently = any(p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params") or [])
    if node.get("concurrent"):  # older parse trees
        concurrently = True
    relation = facts.relation_name(node.get("relation"))
    kind = node.get("kind", "")
    if not relation:  # REINDEX SCHEMA / DATABASE / SYSTEM: every table in it
        return [("(every table)", SHARE_UPDATE_EXCLUSIVE if concurrently else SHARE, "")]
    if concurrently:
        also = " (on its table too)" if kind == "REINDEX_OBJECT_INDEX" else ""
        return [(relation, SHARE_UPDATE_EXCLUSIVE, f"rebuilds without blocking writes{also}")]
    if kind == "REINDEX_OBJECT_INDEX":
        return [(relation, ACCESS_EXCLUSIVE, "the index; its table is locked SHARE (no writes)")]
    return [(relation, SHARE, "and ACCESS EXCLUSIVE on each of its indexes while rebuilt")]


def _expect(stmt: SqlStatement) -> Found:
    """``(relation, mode, note)`` for each relation a statement locks more than reading it would."""
    kind, node = stmt.node_type, stmt.node
    if kind == "AlterTableStmt" and node.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE":
        return _alter_table(stmt)
    if kind == "IndexStmt":
        concurrent = bool(node.get("concurrent"))
        return [
            (
                facts.relation_name(node.get("relation")),
                SHARE_UPDATE_EXCLUSIVE if concurrent else SHARE,
                "" if concurrent else "builds the index while writes wait",
            )
        ]
    if kind == "CreateTrigStmt":
        return [(facts.relation_name(node.get("relation")), SHARE_ROW_EXCLUSIVE, "")]
    if kind == "RuleStmt":
        return [(facts.relation_name(node.get("relation")), ACCESS_EXCLUSIVE, "")]
    if kind == "CreateStatsStmt":
        tables = [facts.relation_name(r.get("RangeVar")) for r in node.get("relations") or []]
        return [(t, SHARE_UPDATE_EXCLUSIVE, "") for t in tables if t]
    if kind == "CommentStmt":
        return _comment(node)
    if kind == "ReindexStmt":
        return _reindex(node)
    if kind == "RenameStmt" and node.get("renameType") == "OBJECT_INDEX":
        relation = facts.relation_name(node.get("relation"))
        return [(relation, SHARE_UPDATE_EXCLUSIVE, "")] if relation else []
    if kind in ("CreatePolicyStmt", "AlterPolicyStmt", "RenameStmt", "ClusterStmt"):
        table = facts.target_table(stmt)
        return [(table, ACCESS_EXCLUSIVE, "")] if table else []
    if kind == "TruncateStmt":
        return [(d.table or d.name, ACCESS_EXCLUSIVE, "") for d in facts.drops(stmt)]
    if kind == "DropStmt":
        for d in facts.drops(stmt):
            if d.kind == "INDEX":
                if d.concurrently:
                    return [(d.name, SHARE_UPDATE_EXCLUSIVE, "on its table too")]
                return [(d.name, ACCESS_EXCLUSIVE, "and ACCESS EXCLUSIVE on its table")]
            if d.kind in ("TABLE", "POLICY", "TRIGGER", "RULE", "VIEW", "MATERIALIZED VIEW"):
                return [(d.table or d.name, ACCESS_EXCLUSIVE, "")]
        return []
    if kind == "LockStmt":
        mode = _MODES_BY_NUMBER.get(node.get("mode", 8), ACCESS_EXCLUSIVE)
        tables = [facts.relation_name(r.get("RangeVar")) for r in node.get("relations") or []]
        return [(t, mode, "explicit LOCK") for t in tables if t]
    if kind in ("UpdateStmt", "DeleteStmt", "InsertStmt"):
        return [(facts.target_table(stmt), ROW_EXCLUSIVE, "plus row locks on every row it changes")]
    if kind == "VacuumStmt":
        full = any(o.get("DefElem", {}).get("defname") == "full" for o in node.get("options") or [])
        tables = [facts.relation_name(r.get("VacuumRelation", {}).get("relation")) for r in node.get("rels") or []]
        mode = ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE
        return [(t, mode, "") for t in tables if t] or [("(every table)", mode, "")]
    if kind == "RefreshMatViewStmt":
        return [
            (
                facts.relation_name(node.get("relation")),
                EXCLUSIVE if node.get("concurrent") else ACCESS_EXCLUSIVE,
                "",
            )
        ]
    if kind == "CreateStmt":
        return _created_references(stmt)
    return []


def expected_locks(sql: str, created_before: set[str] | None = None) -> list[LockExpectation]:
    """Expected table locks of a migration's statements, in order.

    ``created_before`` holds tables created by earlier migrations of the same deploy; it
    is extended with the tables this one creates (so later statements on them block nobody).
    A ``DO`` block is read with PostgreSQL's PL/pgSQL parser: its static statements are
    predicted like the rest; what it runs dynamically (``EXECUTE`` of a computed string)
    is one ``unknown`` entry saying so.
    """
    created = created_before if created_before is not None else set()
    out: list[LockExpectation] = []
    for stmt in parse_sql(sql).statements:
        if stmt.node_type is None:
            continue
        if stmt.node_type == "DoStmt":
            body = facts.do_block(stmt)
            for inner in body.statements:
                _add(out, stmt, inner, created, note="inside the DO block")
            for opaque in body.opaque:
                out.append(
                    LockExpectation(
                        stmt.line,
                        stmt.first_line,
                        "(anything)",
                        UNKNOWN,
                        False,
                        f"the DO block runs {opaque}: see the rehearsal's measured locks",
                    )
                )
            continue
        _add(out, stmt, stmt, created)
    return out


def _add(out: list[LockExpectation], at: SqlStatement, stmt: SqlStatement, created: set[str], note: str = "") -> None:
    """Append ``stmt``'s expectations (located at ``at``: itself, or the DO block it is inside)."""
    found = _expect(stmt)
    new = facts.created_table(stmt)
    if new:
        created.add(facts.bare(new))
    for table, mode, own_note in found:
        if not table:
            continue
        joined = "; ".join(n for n in (own_note, note) if n)
        out.append(LockExpectation(at.line, at.first_line, table, mode, facts.bare(table) in created, joined))
