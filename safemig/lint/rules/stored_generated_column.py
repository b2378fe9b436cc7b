"""ADD COLUMN ... GENERATED ALWAYS AS (...) STORED on an existing table.

Why:
    A stored generated column is computed for every existing row when it is added: the
    table is rewritten under an ACCESS EXCLUSIVE lock. (In CREATE TABLE it is free. A
    virtual generated column, PostgreSQL 18's default, computes on read and adds instantly.)

Bad:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED;

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS total_cents bigint;
"""

from safemig.lint import facts

ID = "stored-generated-column"
SEVERITY = "error"
SUMMARY = "ADD COLUMN ... GENERATED ... STORED rewrites an existing table"
KINDS = {"CreateStmt", "AlterTableStmt"}  # the statements it judges (registry.py)


def check(file):
    for stmt in file.statements_of(KINDS):
        for col in facts.columns(stmt):
            if col.added and col.generated_stored and not file.is_new_table(col.table, stmt):
                virtual = (
                    f"on PostgreSQL {file.pg_version}, drop STORED (a virtual generated column adds without a "
                    f"rewrite; it is computed on read and cannot be indexed), or "
                    if file.pg_version >= 18
                    else ""
                )
                yield file.violation(
                    stmt,
                    f"adding generated column {col.name} rewrites all of {col.table} under an ACCESS EXCLUSIVE lock",
                    f"{virtual}add a plain column (ALTER TABLE {facts.qualified(col.table)} ADD COLUMN IF NOT EXISTS "
                    f"{facts.quote_ident(col.name)} <type>), fill it with a trigger for new rows and a batched "
                    "backfill",
                )
