"""ForgeERP house rule: every new table is tenant-isolated in the migration that creates it.

A CREATE TABLE must declare ``tenant_id UUID NOT NULL``, and the same migration must
``ALTER TABLE ... ENABLE ROW LEVEL SECURITY`` on it and create a policy on it that
filters on ``tenant_id`` (directly, or inside a DO block that guards it).

This file is also the example of a house rule: any ``rules/*.py`` with ``ID``,
``SEVERITY``, ``SUMMARY``, a Why/Bad/Good docstring and ``check(file)`` is loaded by
``safemig lint`` through the same interface as the built-in rules.

Why:
    ForgeERP is multi-tenant in one database. A table without tenant_id, or without
    row-level security, lets one tenant read another's rows the first time a query
    forgets its WHERE clause. Enforcing it in the creating migration means no table is
    ever deployed unprotected, even for one release.

Bad:
    CREATE TABLE IF NOT EXISTS warehouses (id uuid PRIMARY KEY, name text NOT NULL);

Good:
    CREATE TABLE IF NOT EXISTS warehouses (
        id uuid PRIMARY KEY,
        tenant_id UUID NOT NULL,
        name text NOT NULL
    );
    ALTER TABLE warehouses ENABLE ROW LEVEL SECURITY;
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'warehouses' AND policyname = 'warehouses_tenant_isolation') THEN
            CREATE POLICY warehouses_tenant_isolation ON warehouses
                USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
        END IF;
    END $$;
"""

from safemig.lint import facts

ID = "tenant-table"
SEVERITY = "error"
SUMMARY = "ForgeERP: new tables need tenant_id UUID NOT NULL, RLS enabled and a tenant policy in the same migration"
FILES = "migrations"

def _has_tenant_id(node: dict) -> bool:
    elements = node.get("tableElts") or []
    primary_keys = {k for e in elements if e.get("Constraint", {}).get("contype") == "CONSTR_PRIMARY"
                    for k in facts.strings(e["Constraint"].get("keys"))}
    for element in elements:
        column = element.get("ColumnDef")
        if not column or column.get("colname") != "tenant_id":
            continue
        type_names = facts.strings(column.get("typeName", {}).get("names"))
        not_null = facts.column_constraints(column) & {"CONSTR_NOTNULL", "CONSTR_PRIMARY"} or "tenant_id" in primary_keys
        return bool(type_names) and type_names[-1].lower() == "uuid" and bool(not_null)
    return False


def _rls_tables(file) -> set[str]:
    """Tables this migration enables row-level security on (names as PostgreSQL folded them)."""
    return {facts.bare(a.table) for s in file.valid_statements for a in facts.alter_actions(s)
            if a.subtype == "AT_EnableRowSecurity"}


def _names_tenant_id(node) -> bool:
    """True when a column called tenant_id appears anywhere under ``node`` (the policy's USING / WITH CHECK)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            fields = item.get("ColumnRef", {}).get("fields") if "ColumnRef" in item else None
            if fields and facts.strings(fields)[-1:] == ["tenant_id"]:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _tenant_policy_tables(file) -> set[str]:
    """Tables with a policy on tenant_id created by this migration, directly or by a DO block's body."""
    return {facts.bare(facts.target_table(ran)) for stmt in file.valid_statements for ran in facts.executed(stmt)
            if ran.node_type == "CreatePolicyStmt" and (_names_tenant_id(ran.node.get("qual"))
                                                        or _names_tenant_id(ran.node.get("with_check")))}


def check(file):
    rls, policies = None, None
    for stmt in file.valid_statements:
        if stmt.node_type != "CreateStmt" or stmt.node.get("relation", {}).get("relpersistence") == "t":
            continue  # temporary tables hold no tenant data beyond the session
        if stmt.node.get("partbound") or stmt.node.get("inhRelations"):
            continue  # partitions and children inherit the parent's columns (the parent is checked)
        table = facts.relation_name(stmt.node.get("relation"))
        name = facts.bare(table)
        quoted = facts.qualified(table)
        if not _has_tenant_id(stmt.node):
            yield file.violation(stmt, f"table {table} has no tenant_id UUID NOT NULL column",
                                 f"add `tenant_id UUID NOT NULL,` to CREATE TABLE {quoted}")
        if rls is None:
            rls, policies = _rls_tables(file), _tenant_policy_tables(file)
        if name not in rls:
            yield file.violation(stmt, f"table {table} is created without row-level security",
                                 f"add ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY; to this migration")
        if name not in policies:
            yield file.violation(
                stmt, f"table {table} has no tenant policy in this migration",
                f"add a guarded policy: DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = "
                f"'{name}' AND policyname = '{name}_tenant_isolation') THEN CREATE POLICY {name}_tenant_isolation ON "
                f"{quoted} USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id()); "
                f"END IF; END $$;")
