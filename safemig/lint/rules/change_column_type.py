"""ALTER COLUMN ... TYPE on an existing table, unless PostgreSQL can change it without a rewrite.

PostgreSQL rewrites nothing when the change is binary coercible: the same type with a
wider modifier (``varchar(20)`` to ``varchar(40)`` or to ``varchar``, ``numeric(10, 2)`` to
``numeric(12, 2)``, a larger ``timestamp`` precision) or a cast ``pg_cast`` marks binary
(``varchar`` to ``text``, ``cidr`` to ``inet``, ...; read from PostgreSQL's catalog for
``[lint] pg_version``). The column's current type is taken from this migration and the
earlier ones in its directory; when safemig cannot find it, the change is reported.

Why:
    Any other type change rewrites the whole table and its indexes under an ACCESS
    EXCLUSIVE lock, and breaks application code reading the old type.

Bad:
    ALTER TABLE orders ALTER COLUMN total TYPE numeric(14, 2);

Good:
    CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, note varchar(40));
    ALTER TABLE orders ALTER COLUMN note TYPE text;
"""

from safemig.lint import facts

ID = "change-column-type"
SEVERITY = "error"
SUMMARY = "ALTER COLUMN TYPE rewrites the table under an ACCESS EXCLUSIVE lock (unless binary coercible)"
KINDS = {"AlterTableStmt"}  # the statements it judges (registry.py)


def _free(file, stmt, action) -> bool:
    """True when the change is binary coercible from the column's known current type (and has no USING)."""
    from safemig.lint.catalog import binary_coercible, may_be_binary_target

    if action.column_def.get("raw_default"):  # USING expr: PostgreSQL evaluates it for every row
        return False
    new = facts.column_type(action.column_def.get("typeName") or {})
    if not may_be_binary_target(new, file.pg_version):  # e.g. TYPE bigint: a rewrite from anything else
        return False
    old = file.column_before(action.table, action.name, stmt).type
    return old is not None and binary_coercible(old, new, file.pg_version)


def check(file):
    for stmt in file.statements_of(KINDS):
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AlterColumnType" or file.is_new_table(action.table, stmt):
                continue
            if _free(file, stmt, action):
                continue
            table, column = facts.qualified(action.table), facts.quote_ident(action.name)
            new = facts.quote_ident(f"{action.name}_new")
            yield file.violation(
                stmt,
                f"changing the type of {action.table}.{action.name} rewrites the table while blocking reads and writes",
                f"expand and contract: ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {new} <new type>; write both "
                "columns "
                f"from the application, backfill {new} in batches, switch reads, then drop {column} in a later "
                "migration "
                f"(a binary-coercible change such as varchar(n) to text rewrites nothing: safemig passes it when it "
                f"finds the column's current type in the earlier migrations)",
            )
