"""A ``serial`` / ``bigserial`` / ``smallserial`` column.

Why:
    serial creates a sequence the column does not really own (permissions, dumps and
    copies of the table misbehave) and ``smallserial``/``serial`` run out at 32k/2^31.
    Identity columns are the SQL-standard replacement.

Bad:
    CREATE TABLE IF NOT EXISTS invoices (id serial PRIMARY KEY);

Good:
    CREATE TABLE IF NOT EXISTS invoices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
"""

from safemig.lint import facts

ID = "serial-column"
SEVERITY = "warning"
SUMMARY = "serial column: use bigint GENERATED ALWAYS AS IDENTITY"
KINDS = {"CreateStmt", "AlterTableStmt"}  # the statements it judges (registry.py)

SERIALS = facts.SERIALS


def check(file):
    for stmt in file.statements_of(KINDS):
        for col in facts.columns(stmt):
            if col.type_name in SERIALS:
                yield file.violation(
                    stmt,
                    f"column {col.table}.{col.name} is {col.type_name}",
                    f"declare it as {facts.quote_ident(col.name)} bigint GENERATED ALWAYS AS IDENTITY",
                )
