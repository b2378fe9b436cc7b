"""ADD COLUMN with a volatile DEFAULT on an existing table.

Volatility comes from PostgreSQL's catalog (``pg_proc.provolatile`` of the built-in
functions and common extensions, for ``[lint] pg_version``), or from the CREATE FUNCTION
earlier in the same migration or in an earlier migration of the directory. A function
safemig does not know is treated as volatile (PostgreSQL's default for CREATE FUNCTION),
and the finding says so.

Why:
    Since PostgreSQL 11 a constant or STABLE default (``now()``, ``'EUR'``) is stored once
    and the ADD COLUMN is instant. A VOLATILE default (``gen_random_uuid()``, ``random()``,
    ``clock_timestamp()``, ``nextval()``, and so a serial or identity column) must be computed
    per row: the whole table is rewritten under an ACCESS EXCLUSIVE lock.

Bad:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS public_id uuid DEFAULT gen_random_uuid();

Good:
    ALTER TABLE orders ADD COLUMN IF NOT EXISTS public_id uuid;
    ALTER TABLE orders ALTER COLUMN public_id SET DEFAULT gen_random_uuid();
"""

from safemig.lint import facts

ID = "volatile-default"
SEVERITY = "error"
SUMMARY = "ADD COLUMN with a volatile DEFAULT rewrites the whole table"
KINDS = {"AlterTableStmt"}  # the statements it judges (registry.py)


def _declared(statements) -> dict[str, str]:
    """``{name: "i"|"s"|"v"}`` of the functions ``statements`` create (PostgreSQL's default: VOLATILE)."""
    out: dict[str, str] = {}
    for earlier in statements:
        name = facts.routine_name(earlier)
        if name:
            volatility = "v"
            for option in earlier.node.get("options") or []:
                elem = option.get("DefElem", {})
                if elem.get("defname") == "volatility":
                    volatility = elem.get("arg", {}).get("String", {}).get("sval", "volatile")[:1]
            out[name] = volatility
    return out


def _user_volatility(file, stmt) -> dict[str, str]:
    """The volatility of the functions this file creates before ``stmt``."""
    return _declared(file.valid_statements[: file.valid_statements.index(stmt)])


def _volatile_calls(file, stmt, default: dict) -> list[tuple[str, str]]:
    """``(function, why)`` for each function of ``default`` that is (or may be) volatile."""
    from safemig.lint import catalog

    own = None
    out = []
    for name in dict.fromkeys(facts.function_calls(default)):
        if name.startswith("svfop_"):  # CURRENT_TIMESTAMP, CURRENT_USER, ...: SQL value functions, all stable
            continue
        known = catalog.volatility(name, file.pg_version)
        if known is None:
            own = _user_volatility(file, stmt) if own is None else own
            if name in own:
                if own[name] == "v":
                    out.append((name, f"{name}() is declared VOLATILE (the default) in this migration"))
                continue
            from safemig.lint import history

            earlier = _declared(history.earlier_statements(file.path, file.version, name)).get(name)
            if earlier is not None:
                if earlier == "v":
                    out.append((name, f"{name}() is declared VOLATILE (the default) by an earlier migration"))
                continue
            out.append(
                (
                    name,
                    f"{name}() is not a PostgreSQL {file.pg_version} built-in, so safemig does not know its "
                    f"volatility; PostgreSQL's default for a function is VOLATILE",
                )
            )
        elif known == "v":
            out.append((name, f"{name}() is VOLATILE in PostgreSQL {file.pg_version}'s catalog (pg_proc.provolatile)"))
    return out


def _filled_per_row(column_def: dict) -> str | None:
    """A serial type or an identity: the new column gets nextval() for every row (a rewrite)."""
    names = facts.strings(column_def.get("typeName", {}).get("names"))
    if names and names[-1] in facts.SERIALS and len(names) == 1:
        return f"a {names[-1]} column"
    if "CONSTR_IDENTITY" in facts.column_constraints(column_def):
        return "GENERATED AS IDENTITY"
    return None


def check(file):
    for stmt in file.statements_of(KINDS):
        for action in facts.alter_actions(stmt):
            if action.subtype != "AT_AddColumn" or file.is_new_table(action.table, stmt):
                continue
            default = facts.column_default(action.column_def)
            volatile = _volatile_calls(file, stmt, default) if default is not None else []
            filled = _filled_per_row(action.column_def)
            if not volatile and not filled:
                continue
            table, column = facts.qualified(action.table), facts.quote_ident(action.column)
            if filled and not volatile:
                yield file.violation(
                    stmt,
                    f"{filled} numbers every existing row: adding {action.column} rewrites all of {action.table}",
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} bigint; backfill it in batches, then "
                    "make it "
                    f"NOT NULL (CHECK ... NOT VALID, VALIDATE, SET NOT NULL) and ALTER TABLE {table} ALTER COLUMN "
                    f"{column} "
                    f"ADD GENERATED BY DEFAULT AS IDENTITY",
                )
                continue
            coldef = facts.column_def_text(stmt, action.column_def)
            name, why = volatile[0]
            yield file.violation(
                stmt,
                f"DEFAULT {name}() is volatile: adding {action.column} rewrites all of {action.table}; {why}",
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {coldef}; ALTER TABLE {table} ALTER COLUMN {column} "
                f"SET DEFAULT {name}(...); then backfill existing rows in batches (if {name}() is really STABLE or "
                f"IMMUTABLE, silence this with that reason)",
            )
