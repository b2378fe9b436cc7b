"""ALTER COLUMN ... SET NOT NULL (or ADD PRIMARY KEY USING INDEX on a nullable column) on an existing table.

Not reported when the same migration first validates a ``CHECK (col IS NOT NULL)``
constraint of the table (added in this migration or an earlier one): PostgreSQL then
proves the column has no NULL from the constraint and skips the scan. ``ADD PRIMARY KEY
USING INDEX`` makes its columns NOT NULL the same way, so it is reported unless the
columns are already NOT NULL (as the earlier migrations left them).

Why:
    SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock (no reads, no
    writes). The scan is skipped when a validated CHECK (col IS NOT NULL) constraint
    exists, and that constraint can be added NOT VALID and validated without blocking.
    On PostgreSQL 18, ``ADD CONSTRAINT ... NOT NULL col NOT VALID`` then ``VALIDATE
    CONSTRAINT`` does it in two steps.

Bad:
    ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;

Good:
    -- file: migrations/005_validate_currency_not_null.sql
    ALTER TABLE orders VALIDATE CONSTRAINT orders_currency_not_null;
    ALTER TABLE orders ALTER COLUMN currency SET NOT NULL;
    -- file: migrations/004_add_currency_not_null.sql
    ALTER TABLE orders ADD CONSTRAINT orders_currency_not_null CHECK (currency IS NOT NULL) NOT VALID;
"""

from safemig.lint import facts

ID = "set-not-null"
SEVERITY = "error"
SUMMARY = "SET NOT NULL (or PRIMARY KEY USING INDEX on a nullable column) scans the table under ACCESS EXCLUSIVE"


def _two_steps(file, table: str, column: str) -> str:
    check_name = facts.quote_ident(f"{facts.bare(table)}_{column}_not_null")
    qualified, col = facts.qualified(table), facts.quote_ident(column)
    if file.pg_version >= 18:
        return (
            f"ALTER TABLE {qualified} ADD CONSTRAINT {check_name} NOT NULL {col} NOT VALID; then in the next "
            f"migration: ALTER TABLE {qualified} VALIDATE CONSTRAINT {check_name}; (PostgreSQL 18: validating "
            f"takes a SHARE UPDATE EXCLUSIVE lock, and the column is then NOT NULL)"
        )
    return (
        f"ALTER TABLE {qualified} ADD CONSTRAINT {check_name} CHECK ({col} IS NOT NULL) NOT VALID; then in the next "
        f"migration: ALTER TABLE {qualified} VALIDATE CONSTRAINT {check_name}; ALTER TABLE {qualified} ALTER COLUMN "
        f"{col} SET NOT NULL; ALTER TABLE {qualified} DROP CONSTRAINT {check_name};"
    )


def check(file):
    for stmt in file.valid_statements:
        for action in facts.alter_actions(stmt):
            if file.is_new_table(action.table, stmt):
                continue
            if action.subtype == "AT_SetNotNull":
                if file.not_null_check_validated(action.table, action.name, stmt):
                    continue
                yield file.violation(
                    stmt,
                    f"SET NOT NULL on {action.table}.{action.name} scans the table while blocking reads and writes",
                    _two_steps(file, action.table, action.name),
                )
            elif (
                action.subtype == "AT_AddConstraint"
                and action.constraint_type == "PRIMARY KEY"
                and action.constraint.get("indexname")
            ):
                yield from _primary_key_using_index(file, stmt, action)


def _primary_key_using_index(file, stmt, action):
    """ADD PRIMARY KEY USING INDEX: each column not known to be NOT NULL gets a SET NOT NULL scan."""
    index = action.constraint.get("indexname")
    columns = _index_columns(file, stmt, index)
    if columns is None:
        yield file.violation(
            stmt,
            f"ADD PRIMARY KEY USING INDEX {index} makes its columns NOT NULL, scanning {action.table} while blocking "
            f"reads and writes if any of them is nullable (safemig cannot see the index's columns)",
            "make every column of the index NOT NULL first, without a scan (CHECK (col IS NOT NULL) NOT VALID, "
            "VALIDATE, SET NOT NULL), then attach the index",
        )
        return
    nullable = [c for c in columns if not file.column_before(action.table, c, stmt).not_null]
    if nullable:
        yield file.violation(
            stmt,
            f"ADD PRIMARY KEY USING INDEX {index} makes {', '.join(nullable)} NOT NULL, scanning {action.table} while "
            f"blocking reads and writes",
            f"make {nullable[0]} NOT NULL first without a scan: {_two_steps(file, action.table, nullable[0])} "
            f"then attach the index",
        )


def _index_columns(file, stmt, index: str) -> list[str] | None:
    """The plain columns of index ``index`` as this file or the earlier migrations created it, else None."""
    from safemig.lint import history

    position = file.valid_statements.index(stmt)
    candidates = [*history.earlier_statements(file.path, file.version, index), *file.valid_statements[:position]]
    columns = None
    for s in candidates:
        if s.node_type == "IndexStmt" and s.node.get("idxname") == index:
            params = [p.get("IndexElem", {}) for p in s.node.get("indexParams") or []]
            columns = [p["name"] for p in params if p.get("name")] if all(p.get("name") for p in params) else None
    return columns
