"""A migration's rollback script that is empty, ambiguous or does not parse.

The rollback script is ``rollbacks/<VERSION>_*.sql`` or the migration's ``.down.sql``.

Why:
    A rollback script is only discovered to be broken when it is needed: during an
    incident. It is checked with PostgreSQL's parser at review time instead.

Bad:
    -- file: migrations/005_add_order_notes.sql
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
    -- file: rollbacks/005_drop_order_notes.sql
    ALTER TABLE orders DROP COLUMN IF EXISTS note text;

Good:
    -- file: migrations/005_add_order_notes.sql
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
    -- file: rollbacks/005_drop_order_notes.sql
    ALTER TABLE orders DROP COLUMN IF EXISTS note;
"""

ID = "rollback-invalid"
SEVERITY = "error"
SUMMARY = "rollback script that is empty, ambiguous or does not parse"
FILES = "migrations"


def check(file):
    if file.rollback_error:
        yield file.at_file(file.rollback_error, "keep exactly one readable rollback script per migration version")
        return
    if file.rollback_path is None or file.rollback is None:
        return
    name = file.rollback_path.name
    if not file.rollback.statements:
        yield file.at_file(f"rollback script {name} is empty", f"write the SQL that undoes this migration in {name}")
        return
    for stmt in file.rollback.statements:
        if stmt.error:
            yield file.at_file(
                f"rollback script {name} does not parse at line {stmt.error_line}: {stmt.error}",
                f"fix {name}:{stmt.error_line}:{stmt.error_column}",
            )
            return
