"""Ledger states and refusals, computed from files and rows (no database needed here)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from safemig.errors import LedgerError
from safemig.migrations.files import Migration
from safemig.migrations.ledger import AppliedRow, check, states

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def mig(version: int, sql: str = "SELECT 1;", name: str | None = None) -> Migration:
    name = name or f"{version:03d}_m{version}.sql"
    return Migration(version, name.split("_", 1)[1][:-4].replace("_", " "), Path("/p") / name, sql,
                     hashlib.sha384(sql.encode()).digest(), False)


def row(m: Migration, *, success: bool = True, checksum: bytes | None = None) -> AppliedRow:
    return AppliedRow(m.version, m.description, NOW, success, checksum if checksum is not None else m.checksum, 1000)


def test_states_cover_every_case():
    m1, m2, m3, m5, m6 = mig(1), mig(2), mig(3), mig(5), mig(6)
    gone = mig(4, name="004_gone.sql")
    rows = {1: row(m1), 2: row(m2, checksum=b"x" * 48), 4: row(gone), 5: row(m5, success=False)}
    # 3 is older than the newest applied (4): out of order; 6 is newer: pending.
    got = {st.version: st.state for st in states([m1, m2, m3, m5, m6], rows)}
    assert got == {1: "applied", 2: "modified", 3: "out_of_order", 4: "missing", 5: "failed", 6: "pending"}


def test_check_returns_pending_in_order():
    m1, m2, m3 = mig(1), mig(2), mig(3)
    assert check([m3, m1, m2], {1: row(m1)}) == [m2, m3]
    assert check([m1], {1: row(m1)}) == []
    assert check([m1, m2], {}) == [m1, m2]


def test_modified_shows_both_checksums():
    m1 = mig(1)
    old = hashlib.sha384(b"SELECT 0;").digest()
    with pytest.raises(LedgerError) as info:
        check([m1], {1: row(m1, checksum=old)})
    message = info.value.message
    assert "version 1 (m1) was modified" in message
    assert old.hex() in message and m1.checksum.hex() in message
    assert "new migration" in info.value.hint
    assert info.value.exit_code == 1


def test_missing_file_and_rename_detection():
    applied = mig(2, "CREATE TABLE a ();", name="002_a.sql")
    with pytest.raises(LedgerError, match=r"version 2 \(a\) is applied but no file for it exists") as info:
        check([mig(1)], {2: row(applied)})
    assert "restore the file" in info.value.hint
    renamed = mig(7, "CREATE TABLE a ();", name="007_a.sql")
    with pytest.raises(LedgerError, match=r"renamed to 007_a.sql"):
        check([renamed], {2: row(applied)})


def test_failed_row_refuses_with_repair_hint():
    m1 = mig(1)
    with pytest.raises(LedgerError, match=r"version 1 \(m1\) is recorded as failed") as info:
        check([m1, mig(2)], {1: row(m1, success=False)})
    assert "mark-applied 1" in info.value.hint


def test_out_of_order_refused_unless_allowed():
    m1, m2, m3 = mig(1), mig(2), mig(3)
    with pytest.raises(LedgerError, match=r"version 2 \(m2\) is pending but older than the newest applied version 3") as info:
        check([m1, m2, m3], {1: row(m1), 3: row(m3)})
    assert "--allow-out-of-order" in info.value.hint
    assert check([m1, m2, m3], {1: row(m1), 3: row(m3)}, allow_out_of_order=True) == [m2]


def test_several_problems_are_counted():
    m1, m2 = mig(1), mig(2)
    with pytest.raises(LedgerError, match=r"and 1 more problem;"):
        check([m1, m2], {1: row(m1, success=False), 2: row(m2, checksum=b"y" * 48)})
