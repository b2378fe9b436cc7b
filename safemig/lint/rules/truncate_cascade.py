"""TRUNCATE ... CASCADE.

Why:
    CASCADE also empties every table with a foreign key to the truncated one, and their
    referencing tables in turn: the statement does not say which tables lose their data.

Bad:
    TRUNCATE sessions CASCADE;

Good:
    -- file: migrations/005_clear_sessions.sql
    TRUNCATE sessions, session_events;
    -- file: rollbacks/005_restore_sessions.sql
    SELECT 'sessions are recreated on the next login; nothing to restore';
"""

from safemig.lint import facts

ID = "truncate-cascade"
SEVERITY = "error"
SUMMARY = "TRUNCATE ... CASCADE empties tables the statement does not name"
KINDS = {"TruncateStmt"}  # the statements it judges (registry.py)


def check(file):
    for stmt in file.statements_of(KINDS):
        if stmt.node_type == "TruncateStmt" and stmt.node.get("behavior") == "DROP_CASCADE":
            tables = ", ".join(facts.qualified(d.name) for d in facts.drops(stmt))
            yield file.violation(
                stmt,
                f"TRUNCATE {tables} CASCADE also empties every table referencing them",
                f"name every table to empty explicitly: TRUNCATE {tables}, <referencing tables>;",
            )
