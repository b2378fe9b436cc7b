"""A column of type ``json`` (rather than ``jsonb``).

Why:
    ``json`` stores text and re-parses it on every access, has no equality operator (so
    SELECT DISTINCT, GROUP BY and UNION fail on it) and cannot be indexed with GIN.
    ``jsonb`` is what is almost always wanted.

Bad:
    CREATE TABLE IF NOT EXISTS webhooks (id bigint PRIMARY KEY, payload json NOT NULL);

Good:
    CREATE TABLE IF NOT EXISTS webhooks (id bigint PRIMARY KEY, payload jsonb NOT NULL);
"""

from safemig.lint import facts

ID = "json-column"
SEVERITY = "warning"
SUMMARY = "json column: use jsonb"
KINDS = {"CreateStmt", "AlterTableStmt"}  # the statements it judges (registry.py)


def check(file):
    for stmt in file.statements_of(KINDS):
        for col in facts.columns(stmt):
            if col.type_name == "json":
                yield file.violation(
                    stmt, f"column {col.table}.{col.name} is json", f"declare it as {facts.quote_ident(col.name)} jsonb"
                )
