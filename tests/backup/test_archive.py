"""safemig.backup.archive on real pg_dump archives: what it accepts and refuses, against pg_restore's own read.

Every archive here is written by the suite's pg_dump (``-Fc`` to a pipe, as the backup runs it),
and every verdict on a damaged one is compared with ``pg_restore -f /dev/null`` fed the same
bytes through a pipe (as ArchiveCheck fed it before the reader existed).
"""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safemig.backup.archive import ArchiveMalformed, ArchiveReader, read_header, walk

EXPECTED_VERSION = {14: (1, 14, 0), 15: (1, 14, 0), 16: (1, 15, 0), 17: (1, 16, 0), 18: (1, 16, 0)}


def _fill_rich(url: str) -> None:
    """Several tables (one empty, one of md5 text), a partitioned table, large objects, a sequence."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO a SELECT i, md5(i::text) FROM generate_series(1, 3000) i")
        conn.execute("CREATE TABLE empty_one (id int)")
        conn.execute("CREATE TABLE b (id bigserial PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO b (payload) SELECT repeat(md5(i::text), 20) FROM generate_series(1, 500) i")
        conn.execute("CREATE TABLE p (id int, at date) PARTITION BY RANGE (at)")
        conn.execute("CREATE TABLE p_2025 PARTITION OF p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
        conn.execute("CREATE TABLE p_2026 PARTITION OF p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        conn.execute("INSERT INTO p SELECT i, date '2025-01-01' + (i % 700) FROM generate_series(1, 2000) i")
        for i in range(3):
            conn.execute("SELECT lo_from_bytea(0, convert_to(repeat(md5(%s::text), 200), 'UTF8'))", (i,))
        conn.execute("SELECT lo_create(0)")  # an empty large object


def _dump(url: str, *args: str) -> bytes:
    done = subprocess.run(["pg_dump", "-Fc", *args, f"--dbname={url}"], capture_output=True, check=True, timeout=120)
    return done.stdout


def pg_restore_reads(data: bytes) -> bool:
    """``pg_restore -f /dev/null`` fed ``data`` through a pipe: did it read the archive and exit 0?"""
    return pg_restore_says(data)[0]


def pg_restore_says(data: bytes) -> tuple[bool, str]:
    """``pg_restore -f /dev/null`` fed ``data`` through a pipe: (exited 0, its stderr)."""
    try:
        done = subprocess.run(["pg_restore", "-f", os.devnull], input=data, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:  # it loops on bytes after a stream's end: no restore either
        return False, "timed out"
    return done.returncode == 0, done.stderr.decode("utf-8", "replace")


def reader_verdict(data: bytes, piece: int = 65536) -> ArchiveMalformed | None:
    try:
        walk(data[i : i + piece] for i in range(0, len(data), piece))
    except ArchiveMalformed as exc:
        return exc
    return None


@pytest.fixture(scope="module")
def rich_url(pg_cluster):
    name = "archive_rich"
    pg_cluster.drop_database(name)
    url = pg_cluster.create_database(name)
    _fill_rich(url)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture(scope="module")
def archives(rich_url) -> dict[str, bytes]:
    return {level: _dump(rich_url, f"-Z{level}") for level in ("0", "1", "9")}


def _data_entries(data: bytes) -> list[str]:
    listed = subprocess.run(["pg_restore", "--list"], input=data, capture_output=True, check=True).stdout.decode()
    return [line for line in listed.splitlines() if " TABLE DATA " in line or " BLOBS " in line or " BLOB " in line]


@pytest.mark.compat
@pytest.mark.parametrize("level", ["0", "1", "9"])
def test_reads_real_archives_of_every_compression_level(archives, level, pg_major):
    data = archives[level]
    summary = walk([data])
    assert summary.header.version == EXPECTED_VERSION[pg_major]
    assert summary.header.compression == ("none" if level == "0" else "gzip")
    data_lines = [line for line in _data_entries(data) if " TABLE DATA " in line]
    # a, b, empty_one and the two partitions have data; large objects come as one block (or one per group)
    assert summary.blocks >= len(data_lines) + 1
    assert summary.large_objects == 4
    assert sum(summary.block_bytes.values()) > 0
    if level != "0":
        assert summary.inflated_bytes > sum(summary.block_bytes.values())
    assert pg_restore_reads(data)


@pytest.mark.compat
def test_reads_the_archive_of_an_empty_database(database_url, pg_major):
    data = _dump(database_url, "-Z1")
    summary = walk([data])
    assert summary.blocks == 0 and summary.header.version == EXPECTED_VERSION[pg_major]
    assert read_header(data[:40]) is None  # the header is not whole yet
    assert read_header(data).compression == "gzip"


@pytest.mark.compat
def test_every_split_of_the_stream_gives_the_same_summary(archives):
    """Chunk boundaries anywhere (inside ints, strings, chunk payloads) change nothing."""
    data = archives["1"]
    whole = walk([data])
    for piece in (1, 7, 4096, 4101, 1 << 20):
        if piece == 1:
            part = data[:20000]  # byte by byte only through the header and TOC (slow in Python)
            with pytest.raises(ArchiveMalformed, match="the archive ends"):
                walk(part[i : i + 1] for i in range(len(part)))
            continue
        assert walk(data[i : i + piece] for i in range(0, len(data), piece)) == whole


@pytest.mark.compat
def test_truncated_archives_are_refused_as_by_pg_restore(archives):
    data = archives["1"]
    for cut in sorted({1, 5, 11, 200, len(data) // 3, len(data) // 2, len(data) - 40, len(data) - 6, len(data) - 1}):
        found = reader_verdict(data[:cut])
        assert found is not None and "ends" in found.message, cut
        assert not pg_restore_reads(data[:cut]), cut


def _single_table_archive(url: str, level: str) -> bytes:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_one (id int, note text)")
        conn.execute("INSERT INTO only_one SELECT i, md5(i::text) FROM generate_series(1, 20000) i")
    return _dump(url, f"-Z{level}")


@pytest.mark.compat
def test_damage_only_the_inflate_can_see_is_refused(database_url):
    """The archive's last block is the only table's: it ends with zlib's adler32, then the zero chunk length.

    Damage there leaves every length, ID and type intact: a reader that only walked the
    framing (or inflated without checking the stream's checksum and end) would pass it.
    """
    data = _single_table_archive(database_url, "1")
    assert data.endswith(b"\x00" * 5)
    summary = walk([data])
    assert summary.blocks == 1 and summary.inflated_bytes > 0
    for where in (len(data) - 6, len(data) - 9, len(data) - 2000):  # adler32's last and first byte, mid-stream
        damaged = bytearray(data)
        damaged[where] ^= 0x10
        found = reader_verdict(bytes(damaged))
        assert found is not None and "inflate" in found.message and "TABLE DATA public.only_one" in found.message
        assert not pg_restore_reads(bytes(damaged))


@pytest.mark.compat
def test_uncompressed_archive_damage_in_the_framing_is_refused(database_url):
    data = _single_table_archive(database_url, "0")
    assert walk([data]).header.compression == "none"
    damaged = bytearray(data)
    damaged[-1] = 0x80  # the terminating chunk length becomes -2**31
    found = reader_verdict(bytes(damaged))
    assert found is not None and "chunk length" in found.message
    assert not pg_restore_reads(bytes(damaged))


def test_bytes_after_the_last_block_are_refused(archives):
    found = reader_verdict(archives["1"] + b"\x01")
    assert found is not None and found.stricter and "after the last data block" in found.message


def test_a_block_whose_entry_has_no_data_is_refused(database_url):
    """pg_restore skips a block the TOC does not expect (a restore would leave the table empty); the reader does not."""
    data = _single_table_archive(database_url, "1")
    # the only TABLE DATA entry's offset flag is the last K_OFFSET_POS_NOT_SET before the data (1 then 8 zero bytes)
    flag = data.rfind(b"\x01" + b"\x00" * 8, 0, _toc_end(data))
    damaged = bytearray(data)
    damaged[flag] = 3  # K_OFFSET_NO_DATA
    found = reader_verdict(bytes(damaged))
    assert found is not None and found.stricter
    assert pg_restore_reads(bytes(damaged))  # what pg_restore's read lets pass


def test_reader_thread_reports_in_the_callers_thread(archives):
    data = archives["1"]
    reader = ArchiveReader()
    for i in range(0, len(data), 100_000):
        reader.feed(memoryview(data)[i : i + 100_000])
    assert reader.conclude().blocks > 0

    broken = ArchiveReader()
    broken.feed(data[: len(data) // 2])
    with pytest.raises(ArchiveMalformed, match="ends"):
        broken.conclude()

    early = ArchiveReader()
    early.feed(b"not an archive at all")
    for _ in range(50):  # a reader that failed at once takes (and drops) whatever still comes
        early.feed(b"x" * 1000)
    with pytest.raises(ArchiveMalformed, match="PGDMP"):
        early.conclude()

    killed = ArchiveReader()
    killed.feed(data[:1000])
    killed.kill()
    with pytest.raises(ArchiveMalformed, match="stopped"):
        killed.conclude()


class Archive(bytes):
    """An archive's bytes, shown by size (hypothesis prints its arguments on a failure)."""

    def __repr__(self) -> str:
        return f"<archive of {len(self)} bytes>"


@pytest.fixture(scope="module")
def small_archive(pg_cluster) -> Archive:
    name = "archive_small"
    pg_cluster.drop_database(name)
    url = pg_cluster.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t1 (id int PRIMARY KEY, s text)")
        conn.execute("INSERT INTO t1 SELECT i, md5(i::text) FROM generate_series(1, 300) i")
        conn.execute("CREATE TABLE t2 (id int)")
        conn.execute("SELECT lo_from_bytea(0, convert_to(repeat('x', 3000), 'UTF8'))")
    data = _dump(url, "-Z1")
    pg_cluster.drop_database(name)
    if os.environ.get("SAFEMIG_TEST_KEEP_ARCHIVE"):  # for looking into a failing example by hand
        with open(os.environ["SAFEMIG_TEST_KEEP_ARCHIVE"], "wb") as out:
            out.write(data)
    return Archive(data)


@pytest.mark.slow
@pytest.mark.compat
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_verdicts_on_damaged_archives_equal_pg_restores(small_archive, data):
    """Random byte damage or truncation of a real archive: the reader refuses exactly what pg_restore's read refuses.

    The allowed differences, both from damage before the first data block (in the TOC): the
    reader also refuses (``stricter``) a TOC whose entries no longer claim the blocks that
    follow, which pg_restore passes over; and pg_restore 18 refuses an entry whose (damaged)
    type it cannot set an owner for, a check of the SQL it would print that the reader does not
    copy (its list of types changes with each major; a wrong copy would refuse real backups).
    """
    original = small_archive
    kind = data.draw(st.sampled_from(["byte", "byte", "byte", "truncate"]))
    if kind == "truncate":
        at = data.draw(st.integers(0, len(original) - 1))
        damaged = original[:at]
    else:
        at = data.draw(st.integers(0, len(original) - 1))
        value = data.draw(st.integers(0, 255).filter(lambda v: v != original[at]))
        damaged = original[:at] + bytes([value]) + original[at + 1 :]
    found = reader_verdict(damaged, piece=data.draw(st.sampled_from([1000, 65536])))
    restored, said = pg_restore_says(damaged)
    if found is None:
        if "don't know how to set owner for object type" in said:
            assert at < _toc_end(original)
            return
        assert restored, f"the reader passed {kind} at {at}, pg_restore refused it: {said}"
    elif restored:
        toc_end = _toc_end(original)
        assert found.stricter and at < toc_end, f"{kind} at {at}: reader refused ({found.message}), pg_restore read it"


def _toc_end(data: bytes) -> int:
    """The offset of the first data block: where the first block header (type 1 or 3, then a dump ID) starts."""
    from safemig.backup import archive

    chunks = [data]
    src = archive._Bytes(lambda: chunks.pop() if chunks else None)
    header = archive._header(src)
    archive._toc(src, header)
    return src.position


@pytest.mark.compat
def test_lz4_and_zstd_archives_are_read_by_pg_restore(database_url, pg_major):
    """pg_dump 16+'s lz4 and zstd blocks are not inflated here: ArchiveCheck hands them to pg_restore -f /dev/null."""
    from safemig.backup.pgdump import pick_binary
    from safemig.backup.verify import ArchiveCheck
    from safemig.errors import ToolError

    if pg_major < 16:
        pytest.skip("lz4 and zstd archives need pg_dump 16 or newer")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT i, md5(i::text) AS s FROM generate_series(1, 20000) i")
    pg_restore = pick_binary("pg_restore", pg_major, None, purpose="test")
    for method in ("lz4", "zstd"):
        try:
            data = _dump(database_url, f"--compress={method}")
        except subprocess.CalledProcessError:
            continue  # this build of pg_dump lacks it
        assert read_header(data).compression == method
        with pytest.raises(ArchiveMalformed, match="read it with pg_restore"):
            walk([data])
        check = ArchiveCheck(pg_restore)
        for i in range(0, len(data), 65536):
            check.feed(memoryview(data)[i : i + 65536])
        check.conclude("the test archive")
        assert check.read_by.startswith("pg_restore") and check.child is not None
        cut = ArchiveCheck(pg_restore)
        cut.feed(data[: len(data) - 100])
        with pytest.raises(ToolError, match="pg_restore exited with status 1"):
            cut.conclude("the cut archive")


def test_archive_check_reads_gzip_archives_itself(archives, pg_major):
    from safemig.backup.pgdump import pick_binary
    from safemig.backup.verify import ArchiveCheck
    from safemig.errors import ToolError

    pg_restore = pick_binary("pg_restore", pg_major, None, purpose="test")
    data = archives["1"]
    check = ArchiveCheck(pg_restore)
    for i in range(0, 600, 3):  # the header arrives a few bytes at a time
        check.feed(data[i : i + 3])
    check.feed(data[600:])
    check.conclude("the test archive")
    assert check.child is None and check.summary is not None and check.summary.large_objects == 4
    empty = ArchiveCheck(pg_restore)
    with pytest.raises(ToolError, match="not a readable archive: the archive ends at byte 0"):
        empty.conclude("an empty stream")
