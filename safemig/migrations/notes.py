"""``_safemig_notes``: why a version was marked applied by hand, kept next to sqlx's ledger.

sqlx's ``_sqlx_migrations`` must stay byte-identical to what sqlx writes, so the reason
given to ``safemig migrate mark-applied --reason`` cannot go there. It goes into a table
of its own, in the ledger's schema, written in the same transaction as the ledger row.

Why a table rather than a file under ``.safemig/``: the note is a fact about *this
database* (this version was never run here, someone vouched for it). A table travels
with the database: a backup, a restore into staging, a rehearsal copy and a colleague's
``safemig migrate info`` on another machine all see it; a file would be true of one
checkout only. sqlx never looks at the table, and dropping it loses nothing but notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from safemig.migrations.ledger import Ledger, relation_exists

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

NOTES_TABLE = "_safemig_notes"

_CREATE = """
CREATE TABLE IF NOT EXISTS {} (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version BIGINT NOT NULL,
    noted_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    noted_by TEXT NOT NULL DEFAULT current_user,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    checksum BYTEA
)"""


@dataclass(frozen=True)
class Note:
    """One note: ``action`` is what mark-applied did (``inserted``, ``repaired``, ``unchanged``)."""

    version: int
    noted_on: datetime
    noted_by: str
    action: str
    reason: str


def _ident(ledger: Ledger) -> psycopg.sql.Identifier:
    from psycopg import sql

    return sql.Identifier(ledger.schema, NOTES_TABLE)


def add(conn: psycopg.Connection, ledger: Ledger, version: int, action: str, reason: str, checksum: bytes) -> None:
    """Record a note (creating the table on first use); call inside the ledger write's transaction."""
    from psycopg import sql

    conn.execute(sql.SQL(_CREATE).format(_ident(ledger)))
    conn.execute(
        sql.SQL("INSERT INTO {} (version, action, reason, checksum) VALUES (%s, %s, %s, %s)").format(_ident(ledger)),
        (version, action, reason, checksum),
    )


def read(conn: psycopg.Connection, ledger: Ledger) -> dict[int, list[Note]]:
    """Every note by version, oldest first; no table means no notes."""
    from psycopg import sql

    if not relation_exists(conn, ledger.schema, NOTES_TABLE):
        return {}
    result: dict[int, list[Note]] = {}
    cur = conn.execute(
        sql.SQL("SELECT version, noted_on, noted_by, action, reason FROM {} ORDER BY id").format(_ident(ledger))
    )
    for row in cur:
        result.setdefault(row[0], []).append(Note(*row))
    return result
