"""safemig.db: connections, timeouts and sqlx's advisory lock, on a real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from safemig import db
from safemig.errors import ConfigError, DatabaseError
from safemig.local.postgres import free_port

from .conftest import scalar

# On every PostgreSQL major CI tests (docs/postgres-majors.md).
pytestmark = pytest.mark.compat


def _crc32_bitwise(data: bytes) -> int:
    """CRC-32/ISO-HDLC written out bit by bit, independent of zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("name", ["forgeerp", "postgres", "t_0123456789ab", "ünïcode-db"])
def test_lock_id_is_sqlx_generate_lock_id(name):
    expected = 0x3D32AD9E * _crc32_bitwise(name.encode("utf-8"))
    assert db.lock_id(name) == expected
    assert -(2**63) <= db.lock_id(name) < 2**63  # a BIGINT, as pg_advisory_lock needs


def test_lock_id_known_value():
    # crc32("123456789") is the CRC-32 check value 0xCBF43926.
    assert db.lock_id("123456789") == 0x3D32AD9E * 0xCBF43926


def test_connect_failure_masks_password(pg_cluster):
    url = pg_cluster.url("postgres", password="Sup3r-secret-pw")
    with pytest.raises(DatabaseError) as info:
        db.connect(url)
    assert info.value.exit_code == 3
    assert "Sup3r-secret-pw" not in info.value.message
    assert "postgres:****@127.0.0.1" in info.value.message
    assert "password authentication failed" in info.value.message


@pytest.mark.parametrize("url", ["postgresql://u:Sup3r-secret@[::1/db", "host=h password=Sup3r-secret bogus=1"])
def test_connect_bad_url_is_config_error(url):
    with pytest.raises(ConfigError, match="invalid database URL") as info:
        db.connect(url)
    assert info.value.exit_code == 2
    assert "Sup3r-secret" not in info.value.message


def test_wait_until_ready(pg_cluster):
    db.wait_until_ready(pg_cluster.url(), timeout=5)
    started = time.monotonic()
    with pytest.raises(DatabaseError, match="does not answer after 0.5s"):
        db.wait_until_ready(f"postgresql://u:pw@127.0.0.1:{free_port()}/x", timeout=0.5)
    assert time.monotonic() - started < 5


def test_set_timeouts(conn):
    db.set_timeouts(conn, "250ms", "2min")
    assert scalar(conn, "SHOW lock_timeout") == "250ms"
    assert scalar(conn, "SHOW statement_timeout") == "2min"
    db.set_timeouts(conn, None, "0")
    assert scalar(conn, "SHOW lock_timeout") == "250ms"
    with pytest.raises(ConfigError, match="lock_timeout = 'soon' is not a valid duration"):
        db.set_timeouts(conn, "soon", None)
    assert scalar(conn, "SELECT 1") == 1  # the connection is still usable


def _advisory_holders(url: str, key: int) -> int:
    return scalar(
        url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND ((classid::bigint << 32) | objid::bigint) = %s",
        (key & 0xFFFFFFFFFFFFFFFF,),
    )


def test_advisory_lock_takes_sqlx_key_waits_and_releases(database_url):
    first = db.connect(database_url, autocommit=True)
    second = db.connect(database_url)  # not autocommit: must not be left in a transaction
    waited = threading.Event()
    acquired = threading.Event()
    try:
        with db.advisory_lock(first) as key:
            dbname = scalar(first, "SELECT current_database()")
            assert key == db.lock_id(dbname)
            assert _advisory_holders(database_url, key) == 1

            def contender():
                with db.advisory_lock(second, on_wait=waited.set):
                    acquired.set()

            thread = threading.Thread(target=contender)
            thread.start()
            assert waited.wait(10), "on_wait was not called while the lock was taken"
            time.sleep(0.2)
            assert not acquired.is_set()
        thread.join(10)
        assert acquired.is_set()
        assert _advisory_holders(database_url, key) == 0
        assert second.info.transaction_status == 0  # IDLE
    finally:
        first.close()
        second.close()


def test_advisory_lock_released_when_body_fails(conn, database_url):
    with pytest.raises(RuntimeError):
        with db.advisory_lock(conn) as key:
            raise RuntimeError("boom")
    assert _advisory_holders(database_url, key) == 0
