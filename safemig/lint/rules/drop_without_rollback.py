"""A DROP or TRUNCATE in a migration that has no rollback script.

Applies to DROP TABLE, COLUMN, INDEX, VIEW, MATERIALIZED VIEW, FUNCTION, TYPE, SCHEMA,
CONSTRAINT, TRIGGER, POLICY, SEQUENCE, EXTENSION (and the rest of DROP), a type's DROP
ATTRIBUTE, a domain's DROP CONSTRAINT and TRUNCATE.
The migration needs a non-empty rollback script that parses: ``rollbacks/<VERSION>_*.sql``
or its ``.down.sql``. A DROP or TRUNCATE that a ``DO`` block runs counts too, and so does one
in a function or procedure the migration creates and then calls (``SELECT f()``, ``CALL p()``). Dropping a
trigger, policy, function, view or index that the same migration then re-creates (the
drop-and-recreate idiom) destroys nothing and is exempt, unless it is DROP ... CASCADE,
which also drops what depends on it (a generated column using the function, a trigger).

Why:
    Destructive changes cannot be undone by re-running anything. The team's checklist
    requires a rollback plan before a destructive change ships.

Bad:
    -- file: migrations/005_drop_legacy_orders.sql
    DROP TABLE IF EXISTS legacy_orders;

Good:
    -- file: migrations/005_drop_legacy_orders.sql
    DROP TABLE IF EXISTS legacy_orders;
    -- file: rollbacks/005_restore_legacy_orders.sql
    CREATE TABLE IF NOT EXISTS legacy_orders (id bigint PRIMARY KEY, total numeric);
"""

from safemig.lint import facts

ID = "drop-without-rollback"
SEVERITY = "error"
SUMMARY = "DROP/TRUNCATE in a migration without a non-empty rollback script that parses"
FILES = "migrations"

_RECREATABLE = {"TRIGGER", "POLICY", "FUNCTION", "PROCEDURE", "VIEW", "INDEX", "RULE", "CONSTRAINT"}
_CREATE_NODES = {
    "CreateTrigStmt": "TRIGGER",
    "CreatePolicyStmt": "POLICY",
    "CreateFunctionStmt": "FUNCTION",
    "ViewStmt": "VIEW",
    "IndexStmt": "INDEX",
    "RuleStmt": "RULE",
}


def _created(stmt) -> list[tuple[str, str]]:
    """``(kind, name)`` of what ``stmt`` creates: an object, or the constraints an ALTER TABLE adds
    (``DROP CONSTRAINT IF EXISTS c, ADD CONSTRAINT c ...`` is the idempotent way to add one)."""
    named = [("CONSTRAINT", a.constraint.get("conname")) for a in facts.added_constraints(stmt)]
    found = _created_names(stmt)
    return [(k, n) for k, n in named if n] + ([found] if found else [])


def _created_names(stmt) -> tuple[str, str] | None:
    kind = _CREATE_NODES.get(stmt.node_type or "")
    if kind is None:
        return None
    node = stmt.node
    name = {
        "TRIGGER": node.get("trigname"),
        "POLICY": node.get("policy_name"),
        "INDEX": node.get("idxname"),
        "RULE": node.get("rulename"),
        "VIEW": facts.relation_name(node.get("view")),
        "FUNCTION": ".".join(facts.strings(node.get("funcname"))),
    }.get(kind) or ""
    if kind == "FUNCTION" and node.get("is_procedure"):
        kind = "PROCEDURE"
    return kind, facts.bare(name)


def _rollback_problem(file) -> str | None:
    if file.rollback_error:
        return file.rollback_error
    if file.rollback_path is None:
        return "has no rollback script"
    name = file.rollback_path.name
    if file.rollback is None or not file.rollback.statements:
        return f"has an empty rollback script ({name})"
    broken = next((s for s in file.rollback.statements if s.error), None)
    if broken is not None:
        return f"has a rollback script that does not parse ({name}:{broken.error_line}: {broken.error})"
    return None


def check(file):
    problem = _rollback_problem(file)
    if problem is None:
        return
    last_created: dict = {}  # (kind, name) -> where the file last creates it (looked up, not scanned, per DROP)
    for position, stmt in enumerate(file.valid_statements):
        ran = file.executed(stmt)  # a DO block's body, or a function's the file creates and calls, runs now
        dropped = [d for s in ran for d in facts.drops(s)]
        if not dropped:
            continue
        if not last_created:  # built at the first DROP: most files drop nothing
            last_created.update({key: i for i, s in enumerate(file.valid_statements) for key in _created(s)})
        body_creates = {key for s in ran[1:] for key in _created(s)}
        if d_same := {key for key in _created(stmt) if key[0] == "CONSTRAINT"}:
            body_creates |= d_same  # DROP CONSTRAINT IF EXISTS c, ADD CONSTRAINT c in one ALTER TABLE
        destructive = []
        for d in dropped:
            key = (d.kind, facts.bare(d.name))  # re-created by the same body, or by a later statement of the file
            recreated = d.kind in _RECREATABLE and (key in body_creates or last_created.get(key, -1) > position)
            if d.cascade or not recreated:  # CASCADE also drops what depends on it (a column using a function...)
                destructive.append(d)
        if not destructive:
            continue
        what = ", ".join(
            f"DROP {d.kind} {d.name}" if d.kind != "TRUNCATE" else f"TRUNCATE {d.name}" for d in destructive
        )
        version = f"{file.version:03d}" if file.version is not None else "<VERSION>"
        yield file.violation(
            stmt,
            f"{what} destroys data, and migration {version} {problem}",
            f"write in {_where_to_write(file)} the SQL that restores what this drops (recreate the objects and "
            f"reload the data from the pre-deploy backup)",
        )


def _where_to_write(file) -> str:
    """The rollback script to fill in: the file ``safemig migrate add`` creates for this migration (or the
    broken one that exists), so following the hint never makes a second script for the version."""
    if file.rollback_path is not None:
        return file.rollback_path.name
    if file.path.name == "up.sql":  # Diesel layout
        return "down.sql beside it"
    if file.path.name.endswith(".up.sql"):
        return f"{file.path.name.removesuffix('.up.sql')}.down.sql"
    from safemig.migrations.engine import rollback_file_name

    name = rollback_file_name(file.path.name) if file.version is not None else "<VERSION>_rollback_<name>.sql"
    return f"rollbacks/{name} (the stub `safemig migrate add` creates)"
