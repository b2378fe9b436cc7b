"""A statement kind safemig does not review: it is reported, never passed silently.

Why:
    A linter that skips what it does not understand gives false confidence. Statement
    kinds that no rule reviews (e.g. CREATE SERVER, ALTER SYSTEM, SECURITY LABEL) are
    flagged so a human looks at them; silence it with a reason once reviewed.

Bad:
    ALTER SYSTEM SET work_mem = '64MB';

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
"""

ID = "unrecognized-statement"
SEVERITY = "warning"
SUMMARY = "a statement kind no rule reviews (reported so a human does)"

# PostgreSQL node types the rules understand or that are harmless in a migration.
REVIEWED = {
    "AlterTableStmt",
    "AlterEnumStmt",
    "AlterSeqStmt",
    "AlterDomainStmt",
    "AlterFunctionStmt",
    "AlterOwnerStmt",
    "AlterObjectSchemaStmt",
    "AlterDefaultPrivilegesStmt",
    "AlterPolicyStmt",
    "AlterTypeStmt",
    "AlterExtensionStmt",
    "AlterStatsStmt",
    "AlterCollationStmt",
    "AlterTableMoveAllStmt",
    "CreateStmt",
    "CreateTableAsStmt",
    "IndexStmt",
    "CreateSchemaStmt",
    "CreateSeqStmt",
    "CreateExtensionStmt",
    "CreateFunctionStmt",
    "ViewStmt",
    "CreateTrigStmt",
    "CreatePolicyStmt",
    "CompositeTypeStmt",
    "CreateEnumStmt",
    "CreateRangeStmt",
    "CreateDomainStmt",
    "DefineStmt",
    "RuleStmt",
    "CreateStatsStmt",
    "CreateCastStmt",
    "CreateEventTrigStmt",
    "CreateConversionStmt",
    "CreatePublicationStmt",
    "AlterPublicationStmt",
    "DropStmt",
    "DropOwnedStmt",
    "TruncateStmt",
    "RenameStmt",
    "CommentStmt",
    "GrantStmt",
    "GrantRoleStmt",
    "DoStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "SelectStmt",
    "MergeStmt",
    "CallStmt",
    "VariableSetStmt",
    "VariableShowStmt",
    "TransactionStmt",
    "LockStmt",
    "VacuumStmt",
    "ReindexStmt",
    "RefreshMatViewStmt",
    "ClusterStmt",
    "CreateRoleStmt",
    "AlterRoleStmt",
    "DropRoleStmt",
    "NotifyStmt",
    "ConstraintsSetStmt",
    "DeclareCursorStmt",
    "ExplainStmt",
    "CopyStmt",
    "CheckPointStmt",
    "DiscardStmt",
}


def check(file):
    from safemig.lint import facts

    for stmt in file.valid_statements:
        if stmt.node_type not in REVIEWED:
            yield file.violation(
                stmt,
                f"safemig does not review {stmt.first_line[:60]!r} ({stmt.node_type})",
                "review this statement by hand for locks and data loss, then silence this with a reason",
            )
        elif stmt.node_type == "DoStmt" and facts.do_block(stmt).opaque:
            yield file.violation(
                stmt,
                f"safemig cannot see what this DO block runs: {facts.do_block(stmt).opaque[0]}",
                "review what it executes by hand for locks and data loss, then silence this with a reason",
            )
        elif stmt.node_type == "DoStmt" and _unchecked(facts.do_block(stmt).statements):
            yield file.violation(
                stmt,
                f"safemig does not review the {_unchecked(facts.do_block(stmt).statements)} this "
                f"DO block runs (for locks and table rewrites)",
                _PREFER_PLAIN,
            )
        for routine in file.called_routines(stmt):  # a function of this file that this statement runs
            body, name = facts.routine_body(routine), facts.routine_name(routine)
            if body.opaque:
                yield file.violation(
                    stmt,
                    f"safemig cannot see what {name}() runs: {body.opaque[0]}",
                    "review what it executes by hand for locks and data loss, then silence this with a reason",
                )
            elif _unchecked(body.statements):
                yield file.violation(
                    stmt,
                    f"safemig does not review the {_unchecked(body.statements)} that {name}() "
                    f"runs (for locks and table rewrites)",
                    _PREFER_PLAIN,
                )


_PREFER_PLAIN = (
    "prefer a plain statement (every rule then checks it); else review it by hand, then silence this with a reason"
)


def _unchecked(statements) -> str:
    """The node type of the first statement of a body that no rule checks for locks (inside bodies only
    DROP/TRUNCATE/RENAME are checked; locking statements get a human), else ``""``."""
    for s in statements:
        if (s.node_type in _LOCKING_IN_DO and not _instant_alter(s)) or s.node_type not in REVIEWED:
            return s.node_type
    return ""


_LOCKING_IN_DO = {
    "AlterTableStmt",
    "IndexStmt",
    "UpdateStmt",
    "DeleteStmt",
    "LockStmt",
    "VacuumStmt",
    "ReindexStmt",
    "ClusterStmt",
    "RefreshMatViewStmt",
}
_INSTANT = {
    "AT_ValidateConstraint",
    "AT_EnableRowSecurity",
    "AT_ForceRowSecurity",
    "AT_DisableRowSecurity",
    "AT_NoForceRowSecurity",
}


def _instant_alter(stmt) -> bool:
    """An ALTER TABLE whose every action is quick: the guarded idioms of idempotent migrations
    (ADD CONSTRAINT ... NOT VALID, VALIDATE CONSTRAINT, ROW LEVEL SECURITY, ADD COLUMN of a plain nullable column)."""
    from safemig.lint import facts

    actions = facts.alter_actions(stmt)
    if stmt.node_type != "AlterTableStmt" or not actions:
        return False
    for a in actions:
        if a.subtype in _INSTANT or (a.subtype == "AT_AddConstraint" and a.constraint.get("skip_validation")):
            continue
        type_names = facts.strings(a.column_def.get("typeName", {}).get("names"))
        if (
            a.subtype == "AT_AddColumn"
            and not a.column_def.get("constraints")
            and not (type_names and type_names[-1] in facts.SERIALS)
        ):
            continue
        return False
    return True
