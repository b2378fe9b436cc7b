"""ADD FOREIGN KEY or CHECK constraint without NOT VALID on an existing table (or domain).

A foreign key written on a column the same statement adds (``ADD COLUMN c uuid REFERENCES
t (id)``) with no default is not reported: every row holds NULL there, so PostgreSQL has
nothing to validate. ``ALTER DOMAIN ... ADD CONSTRAINT`` without NOT VALID is reported: it
checks every column of that domain in every table.

Why:
    Adding a validated constraint scans the whole table while holding a lock that blocks
    writes (a foreign key also locks the referenced table). Add it NOT VALID (instant,
    enforced for new rows), then VALIDATE CONSTRAINT in a later migration, which only
    takes a SHARE UPDATE EXCLUSIVE lock.

Bad:
    ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);

Good:
    ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_customer_fk,
        ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
"""

from safemig.lint import facts

ID = "constraint-without-not-valid"
SEVERITY = "error"
SUMMARY = "ADD FOREIGN KEY / CHECK without NOT VALID scans the table under a write-blocking lock"


def _new_column_without_value(stmt, action) -> bool:
    """A foreign key on a column this statement adds with no default: all NULL, nothing to validate."""
    if not action.inline_column or action.constraint_type != "FOREIGN KEY":
        return False
    for other in facts.alter_actions(stmt):
        if other.subtype == "AT_AddColumn" and other.column == action.inline_column:
            contypes = facts.column_constraints(other.column_def)
            return facts.column_default(other.column_def) is None and not contypes & {
                "CONSTR_IDENTITY",
                "CONSTR_GENERATED",
            }
    return False


def _domain(file, stmt):
    """ALTER DOMAIN d ADD CONSTRAINT c CHECK (...) without NOT VALID: every column of type d is checked."""
    constraint = stmt.node.get("def", {}).get("Constraint", {})
    if stmt.node.get("subtype") != "C" or constraint.get("skip_validation"):
        return
    domain = ".".join(facts.strings(stmt.node.get("typeName")))
    name = constraint.get("conname") or f"{facts.bare(domain)}_check"
    yield file.violation(
        stmt,
        f"ADD CONSTRAINT {name} on domain {domain} checks every column of that domain in every table, "
        f"while blocking writes to them",
        f"{stmt.text} NOT VALID; then, in a later migration: ALTER DOMAIN {facts.qualified(domain)} "
        f"VALIDATE CONSTRAINT {facts.quote_ident(name)};",
    )


def check(file):
    for stmt in file.valid_statements:
        if stmt.node_type == "AlterDomainStmt":
            yield from _domain(file, stmt)
        for action in facts.added_constraints(stmt):  # also ADD COLUMN c bigint REFERENCES t (id)
            if action.constraint_type not in ("FOREIGN KEY", "CHECK"):
                continue
            if action.constraint.get("skip_validation") or file.is_new_table(action.table, stmt):
                continue
            if _new_column_without_value(stmt, action):
                continue
            table = facts.qualified(action.table)
            name = action.constraint.get("conname") or "_".join(
                [
                    facts.bare(action.table),
                    *([action.inline_column] if action.inline_column else []),
                    {"FOREIGN KEY": "fkey"}.get(action.constraint_type, "check")
                    if action.inline_column
                    else action.constraint_type.split()[0].lower(),
                ]
            )
            single = (
                len(facts.alter_actions(stmt)) == 1 and action.constraint.get("conname") and not action.inline_column
            )
            body = f"{action.constraint_type} (...)"
            if action.inline_column and action.constraint_type == "FOREIGN KEY":
                referenced = facts.qualified(facts.relation_name(action.constraint.get("pktable")))
                keys = ", ".join(facts.quote_ident(k) for k in facts.strings(action.constraint.get("pk_attrs")))
                body = f"FOREIGN KEY ({facts.quote_ident(action.inline_column)}) REFERENCES {referenced}" + (
                    f" ({keys})" if keys else ""
                )
            add = (
                f"{stmt.text} NOT VALID"
                if single
                else (f"ALTER TABLE {table} ADD CONSTRAINT {facts.quote_ident(name)} {body} NOT VALID")
            )
            if action.inline_column:  # NOT VALID cannot be written on a column: add the column, then the constraint
                add = f"add the column without it, then {add}"
            yield file.violation(
                stmt,
                f"{action.constraint_type} constraint {name} on {action.table} is validated while writes are blocked",
                f"{add}; then, in a later migration: ALTER TABLE {table} VALIDATE CONSTRAINT "
                f"{facts.quote_ident(name)};",
            )
