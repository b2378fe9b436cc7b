"""VACUUM FULL in a migration.

Why:
    VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock for as long as the copy
    takes: no reads, no writes. Use pg_repack (online) or plain VACUUM (which, like any
    VACUUM, cannot run inside sqlx's transaction: the file needs ``-- no-transaction``).

Bad:
    VACUUM FULL orders;

Good:
    -- no-transaction
    VACUUM (ANALYZE) orders;
"""

from safemig.lint import facts

ID = "vacuum-full"
SEVERITY = "error"
SUMMARY = "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock"
KINDS = {"VacuumStmt"}  # the statements it judges (registry.py)


def check(file):
    for stmt in file.statements_of(KINDS):
        if stmt.node_type != "VacuumStmt":
            continue
        if facts.option_enabled(stmt.node.get("options"), "full"):  # VACUUM (FULL false) is a plain VACUUM
            tables = (
                ", ".join(
                    facts.relation_name(r.get("VacuumRelation", {}).get("relation"))
                    for r in stmt.node.get("rels") or []
                )
                or "every table"
            )
            yield file.violation(
                stmt,
                f"VACUUM FULL locks {tables} against reads and writes while it rewrites",
                f"run pg_repack --table {tables} outside the migration, or plain VACUUM (ANALYZE) {tables} "
                f"(in a migration whose first line is `-- no-transaction`)",
            )
