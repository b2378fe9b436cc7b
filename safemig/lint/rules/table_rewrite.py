"""A statement that rewrites or blocks an existing table under an ACCESS EXCLUSIVE lock, with no online form in
the statement.

Flags ALTER TABLE ... SET TABLESPACE, SET LOGGED, SET UNLOGGED, SET ACCESS METHOD (each
copies the whole table) and ALTER COLUMN ... SET EXPRESSION (PostgreSQL 17: recomputes a
stored generated column), ALTER INDEX / MATERIALIZED VIEW ... SET TABLESPACE and ... ALL IN
TABLESPACE (copy each one), CLUSTER (copies it in index order), ADD CONSTRAINT ... EXCLUDE
(builds its index under the lock; unlike UNIQUE there is no USING INDEX form) and REFRESH
MATERIALIZED VIEW without CONCURRENTLY (blocks every read of the view until it is
refilled). Tables and materialized views created earlier in the same file are exempt.
VACUUM FULL, REINDEX, LOCK TABLE, ALTER COLUMN TYPE and ADD UNIQUE / PRIMARY KEY have
rules of their own and are not repeated here.

Why:
    Each of these holds an ACCESS EXCLUSIVE lock for as long as it copies the table or
    builds the index: no reads and no writes, for minutes on a large table. Do it online
    (pg_repack, REFRESH ... CONCURRENTLY), on a new table, or in a low-traffic window
    with a lock_timeout.

Bad:
    ALTER TABLE orders SET TABLESPACE fast_ssd;

Good:
    REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;
"""

import re

from safemig.lint import facts

ID = "table-rewrite"
SEVERITY = "error"
SUMMARY = (
    "SET TABLESPACE / LOGGED / UNLOGGED / ACCESS METHOD, CLUSTER, ADD EXCLUDE, REFRESH MATERIALIZED VIEW "
    "block an existing table"
)

_WINDOW = "run it in a low-traffic window after SET lock_timeout = '5s'; (and retry on timeout)"


def _shell(name: str) -> str:
    """One shell word (``billing."Orders"`` -> ``'billing."Orders"'``). pg_repack reads --table as a regclass
    (so the name is quoted as in SQL) and --tablespace as a plain name."""
    return name if re.fullmatch(r"[\w.]+", name) else "'" + name.replace("'", "'\\''") + "'"


def _new_table(table: str) -> str:
    """``billing.Orders`` -> ``billing."Orders_new"``: the copy, in the same schema, ready to paste."""
    return facts.qualified(f"{table}_new")


def _create_copy(table: str, create: str = "CREATE TABLE", using: str = "") -> str:
    return f"{create} IF NOT EXISTS {_new_table(table)} (LIKE {facts.qualified(table)} INCLUDING ALL){using};"


_FILL = "copy the rows in batches (keeping new writes in step), then swap the names"


def _alter(file, stmt):
    actions = facts.alter_actions(stmt)  # [] unless an ALTER TABLE of a table
    if not actions or file.is_new_table(actions[0].table, stmt):
        return
    for action in actions:
        table, qualified, name = action.table, facts.qualified(action.table), action.name
        if action.subtype == "AT_SetTableSpace":
            yield (
                f"SET TABLESPACE {name} rewrites all of {table} while blocking reads and writes",
                f"move it online, outside the migration: pg_repack --table {_shell(qualified)} --tablespace "
                f"{_shell(name)} (add --moveidx to move its indexes too; pg_repack needs a "
                f"primary key or a unique index on NOT NULL columns)",
            )
        elif action.subtype in ("AT_SetLogged", "AT_SetUnLogged"):
            what = "LOGGED" if action.subtype == "AT_SetLogged" else "UNLOGGED"
            create = "CREATE TABLE" if what == "LOGGED" else "CREATE UNLOGGED TABLE"
            yield (
                f"SET {what} rewrites all of {table} while blocking reads and writes",
                f"there is no online form: {_WINDOW}, or {_create_copy(table, create)} {_FILL}",
            )
        elif action.subtype == "AT_SetExpression":  # PostgreSQL 17+: recomputes a stored generated column
            yield (
                f"SET EXPRESSION on {table}.{name} recomputes the stored generated column, rewriting all of {table} "
                f"while blocking reads and writes (a virtual column, PostgreSQL 18, is not rewritten)",
                f"add a new column with the new expression and switch readers to it, or {_WINDOW}",
            )
        elif action.subtype == "AT_SetAccessMethod":
            method = f" {name}" if name else " DEFAULT"
            using = f" USING {facts.quote_ident(name)}" if name else ""
            yield (
                f"SET ACCESS METHOD{method} rewrites all of {table} while blocking reads and writes",
                f"there is no online form: {_WINDOW}, or {_create_copy(table, using=using)} {_FILL}",
            )
    for action in facts.added_constraints(stmt):
        if action.constraint_type != "EXCLUDE":
            continue
        name = action.constraint.get("conname") or ""
        clause = facts.clause_text(stmt, action.constraint) or "CONSTRAINT ... EXCLUDE ..."
        yield (
            f"EXCLUDE constraint {name + ' ' if name else ''}on {action.table} builds its index while blocking "
            f"reads and writes",
            f"EXCLUDE has no USING INDEX form: {_WINDOW}, or build it on a new table: "
            f"{_create_copy(action.table)} ALTER TABLE {_new_table(action.table)} ADD {clause}; {_FILL}",
        )


def _cluster(file, stmt):
    table = facts.target_table(stmt)
    if not table:
        yield (
            "CLUSTER without a table rewrites every table clustered before, each while blocking reads and writes",
            "name the table, or reorder each one online outside the migration: pg_repack --table <table>",
        )
        return
    if file.is_new_table(table, stmt):
        return
    index = stmt.node.get("indexname")
    first = f"ALTER TABLE {facts.qualified(table)} CLUSTER ON {facts.quote_ident(index)}; then, " if index else ""
    yield (
        f"CLUSTER rewrites all of {table} while blocking reads and writes",
        f"{first}outside the migration: pg_repack --table {_shell(facts.qualified(table))} (it reorders the table "
        f"by its clustering index online; it needs a primary key or a unique index on NOT NULL columns)",
    )


def _refresh(file, stmt):
    view = facts.target_table(stmt)
    if stmt.node.get("concurrent") or file.is_new_table(view, stmt):
        return
    qualified = facts.qualified(view)
    index = facts.quote_ident(f"{facts.bare(view)}_key_idx")
    empties = " and leaves it empty (WITH NO DATA)" if stmt.node.get("skipData") else ""
    yield (
        f"REFRESH MATERIALIZED VIEW {view} blocks every read of it until the refresh ends{empties}",
        f"REFRESH MATERIALIZED VIEW CONCURRENTLY {qualified}; (it needs a unique index on the view: "
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {qualified} (<key columns>), in a "
        f"migration whose first line is `-- no-transaction`)",
    )


def _alter_index_or_view(file, stmt):
    """ALTER INDEX / ALTER MATERIALIZED VIEW ... SET TABLESPACE (not an ALTER TABLE of a table)."""
    objtype = stmt.node.get("objtype")
    if objtype not in ("OBJECT_INDEX", "OBJECT_MATVIEW"):
        return
    name = facts.relation_name(stmt.node.get("relation"))
    for cmd in stmt.node.get("cmds") or []:
        space = cmd.get("AlterTableCmd", {}).get("name", "")
        if cmd.get("AlterTableCmd", {}).get("subtype") != "AT_SetTableSpace":
            continue
        if objtype == "OBJECT_INDEX":
            if file.is_new_index(name, stmt):
                continue  # created by this migration: its build was judged where it was created
            yield (
                f"SET TABLESPACE {space} copies index {name} while blocking writes to its table and reads that use it",
                f"REINDEX INDEX CONCURRENTLY {facts.qualified(name)} TABLESPACE {facts.quote_ident(space)}; "
                f"(PostgreSQL 14+; in a migration whose first line is `-- no-transaction`)",
            )
        elif not file.is_new_table(name, stmt):
            yield (
                f"SET TABLESPACE {space} copies materialized view {name} while blocking every read of it",
                f"there is no online form: {_WINDOW}, or create a new materialized view in the tablespace "
                f"(CREATE MATERIALIZED VIEW IF NOT EXISTS ... TABLESPACE {facts.quote_ident(space)} AS ...) and swap "
                "the names",
            )


def _alter_any(file, stmt):
    yield from _alter(file, stmt)
    yield from _alter_index_or_view(file, stmt)


def _move_all(file, stmt):
    """ALTER TABLE / INDEX / MATERIALIZED VIEW ALL IN TABLESPACE a SET TABLESPACE b: every one of them."""
    node = stmt.node
    kind = {"OBJECT_TABLE": "table", "OBJECT_INDEX": "index", "OBJECT_MATVIEW": "materialized view"}.get(
        node.get("objtype", ""), "relation"
    )
    yield (
        f"ALL IN TABLESPACE {node.get('orig_tablespacename', '?')} copies every {kind} there to "
        f"{node.get('new_tablespacename', '?')}, each while blocking reads and writes",
        "move them one at a time, online and outside the migration: pg_repack --table <table> --tablespace "
        f"{_shell(node.get('new_tablespacename', '<tablespace>'))} --moveidx",
    )


_CHECKS = {
    "AlterTableStmt": _alter_any,
    "ClusterStmt": _cluster,
    "RefreshMatViewStmt": _refresh,
    "AlterTableMoveAllStmt": _move_all,
}


def check(file):
    for stmt in file.valid_statements:
        judge = _CHECKS.get(stmt.node_type or "")
        if judge is not None:
            for message, hint in judge(file, stmt):
                yield file.violation(stmt, message, hint)
