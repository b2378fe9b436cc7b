"""A statement PostgreSQL itself would reject.

Every statement is parsed with PostgreSQL's own grammar (libpg_query, through pglast);
what it rejects is reported where it fails, and no other rule guesses at its meaning.
Input that ends inside a string, a comment or a dollar-quoted body is reported too.

Why:
    A migration that does not parse fails at deploy time, possibly after earlier
    statements of a no-transaction migration already ran. Catch it at review time.

Bad:
    CREATE TABLE IF NOT EXISTS orders (id bigint,, total numeric);

Good:
    CREATE TABLE IF NOT EXISTS orders (id bigint, total numeric);
"""

from safemig.lint.finding import Violation

ID = "syntax-error"
SEVERITY = "error"
SUMMARY = "a statement PostgreSQL would reject (checked with PostgreSQL's own parser)"


def check(file):
    for stmt in file.statements:
        if stmt.error is not None:
            yield Violation(
                stmt.error_line,
                stmt.error_column,
                f"PostgreSQL would reject this statement: {stmt.error}",
                "fix the syntax at the position shown (try it in psql against a scratch database)",
                stmt.text,
            )
