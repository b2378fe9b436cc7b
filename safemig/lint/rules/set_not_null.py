"""ALTER COLUMN ... SET NOT NULL on an existing table.

Why:
    SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock (no reads, no
    writes). Since PostgreSQL 12 the scan is skipped when a validated CHECK (col IS NOT
    NULL) constraint exists, and that constraint can be added NOT VALID and validated
    without blocking.

Bad:
    ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;

Good:
    ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null CHECK (currency IS NOT NULL) NOT VALID;
"""

from safemig.lint import facts

ID = "set-not-null"
SEVERITY = "error"
SUMMARY = "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock"


def check(file):
    for stmt in file.valid_statements:
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_SetNotNull" or file.is_new_table(action.table, stmt):
                continue
            table, column = facts.qualified(action.table), facts.quote_ident(action.name)
            check_name = facts.quote_ident(f"{facts.bare(action.table)}_{action.name}_not_null")
            yield file.violation(
                stmt,
                f"SET NOT NULL on {action.table}.{action.name} scans the table while blocking reads and writes",
                f"ALTER TABLE {table} ADD CONSTRAINT {check_name} CHECK ({column} IS NOT NULL) NOT VALID; then in the next "
                f"migration: ALTER TABLE {table} VALIDATE CONSTRAINT {check_name}; ALTER TABLE {table} ALTER COLUMN {column} "
                f"SET NOT NULL; ALTER TABLE {table} DROP CONSTRAINT {check_name};",
            )
