"""Read a pg_dump custom-format archive to its last byte: what ``pg_restore -f /dev/null`` proves, at less CPU.

Why hand-written: a backup is proven restorable by reading every data block of the archive
while it is uploaded, beside pg_dump, on the same cores. ``pg_restore -f /dev/null`` is the only
reader PostgreSQL ships, and it has no cheaper mode: it inflates every block with the system's
zlib (94% of its time, perf) and turns every row into SQL text that /dev/null then discards;
``pg_restore --list`` reads only the table of contents. No library reads the format. This module
walks the same structure in the same order and checks what pg_restore's read fails on, with
ISA-L's inflate (``isal``: 2.3x zlib's speed here; the standard library's zlib, identical in what
it accepts, where isal cannot be imported), in a thread of the process that already holds the
bytes (no pipe, no second process).

What it mirrors (PostgreSQL's src/bin/pg_dump, archive versions 1.12-1.16, written by pg_dump
9.5-18; the supported pg_dump majors 14-18 write 1.14-1.16):

* ``ReadHead`` (pg_backup_archiver.c): magic ``PGDMP``, version, integer size (4) and offset
  size, format (1 = custom), compression (an algorithm byte from 1.15, a gzip level before),
  creation time, database name, server and pg_dump versions;
* ``ReadToc``: every TOC entry with its version-dependent fields, the checks pg_restore makes
  while reading it (positive dump IDs; the ENCODING, STDSTRINGS and SEARCHPATH items; a string
  pg_restore dereferences being present) and ``buildTocEntryArrays``' check of a TABLE DATA
  entry's table ID; the custom format's data-offset flag (``_ReadExtraToc``, ``ReadOffset``);
* the data (pg_backup_custom.c ``_PrintTocData``, ``_readBlockHeader``, ``_CustomReadFunc``,
  ``_LoadLOs``; compress_gzip.c ``ReadDataFromArchiveGzip``): each block's type (1 data, 3 large
  objects) and dump ID, its length-prefixed chunks up to the zero length, the large objects' OIDs
  up to the zero OID, and each compressed stream inflated completely: zlib's adler32 checked,
  ending exactly where its block ends.

Where it is stricter than pg_restore (which skips what it is not looking for): the blocks must
be exactly those of the TOC entries that have data, in TOC order (a pipe-fed pg_restore needs
that order too, but passes over a block that no entry claims, and never notices a block whose
entry the TOC says has no data: a restore would silently leave that table empty), nothing may
follow the last block (true of pg_dump's output through a pipe, which is what safemig reads; a
pg_dump 17+ writing to a seekable file appends a second copy of the TOC, refused here), and the
header's integer size, offset size, compression algorithm and version are what pg_dump writes.
Not copied: pg_restore 18's refusal of an entry type it cannot print an ``ALTER ... OWNER`` for
(the list changes with each major; a wrong copy would refuse real backups). lz4 and zstd
archives (pg_dump 16+) are not read here: the caller keeps pg_restore's read for them
(:func:`read_header` tells which).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BLK_DATA = 1
BLK_BLOBS = 3
_OFFSET_NOT_SET, _OFFSET_SET, _OFFSET_NO_DATA = 1, 2, 3
_SECTIONS = {1: "none", 2: "pre-data", 3: "data", 4: "post-data"}
MIN_VERSION = (1, 12, 0)
MAX_VERSION = (1, 16, 0)
_ALGORITHMS = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}
_KEEP = 256  # bytes kept of a string that is only named in messages or compared (the rest is skipped)

# PostgreSQL's encoding names (pg_enc2name_tbl), compared as pg_char_to_encoding does: lower case,
# letters and digits only. pg_dump writes these; an alias in a damaged archive is refused here.
_ENCODINGS = {
    re.sub(r"[^0-9a-z]", "", name.lower())
    for name in (
        "SQL_ASCII EUC_JP EUC_CN EUC_KR EUC_TW EUC_JIS_2004 UTF8 MULE_INTERNAL LATIN1 LATIN2 LATIN3 LATIN4"
        " LATIN5 LATIN6 LATIN7 LATIN8 LATIN9 LATIN10 WIN1256 WIN1258 WIN866 WIN874 KOI8R WIN1251 WIN1252"
        " ISO_8859_5 ISO_8859_6 ISO_8859_7 ISO_8859_8 WIN1250 WIN1253 WIN1254 WIN1255 WIN1257 KOI8U SJIS"
        " BIG5 GBK UHC GB18030 JOHAB SHIFT_JIS_2004"
    ).split()
}


class ArchiveMalformed(Exception):
    """The bytes are not a complete, readable pg_dump archive; the message names where.

    ``stricter``: a finding pg_restore's own read lets pass (see the module docstring).
    """

    def __init__(self, message: str, *, stricter: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.stricter = stricter


class _Truncated(Exception):
    """The input ended inside a structure (a header still being received, or a cut archive)."""


class _Stopped(Exception):
    """:meth:`ArchiveReader.kill` was called."""


@dataclass(frozen=True)
class Header:
    version: tuple[int, int, int]
    int_size: int
    off_size: int
    compression: str  # none, gzip, lz4, zstd
    database: str
    server_version: str
    pg_dump_version: str

    @property
    def version_text(self) -> str:
        major, minor, rev = self.version
        return f"{major}.{minor}-{rev}"


@dataclass
class Entry:
    dump_id: int
    desc: str
    tag: str
    namespace: str
    has_data: bool

    def name(self) -> str:
        where = f"{self.namespace}.{self.tag}" if self.namespace else self.tag
        return f"TOC entry {self.dump_id} ({self.desc} {where})"


@dataclass
class Summary:
    """What a complete read found."""

    header: Header
    entries: int
    blocks: int
    large_objects: int = 0
    inflated_bytes: int = 0
    block_bytes: dict[int, int] = field(default_factory=dict)  # dump ID -> bytes of its block's chunks


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


class _Bytes:
    """The archive as a pull source over the chunks ``next_chunk`` returns (``None`` at the end)."""

    def __init__(self, next_chunk: Callable[[], bytes | None]) -> None:
        self._next = next_chunk
        self._buf = b""
        self._view = memoryview(b"")
        self._off = 0
        self._base = 0  # archive offset of self._buf[0]
        self._ended = False
        self.where = "the header"

    @property
    def position(self) -> int:
        return self._base + self._off

    def _advance(self) -> bool:
        """Move on to the next chunk (the current one is used up); False at the end of the input."""
        if self._ended:
            return False
        chunk = self._next()
        if chunk is None:
            self._ended = True
            return False
        self._base += len(self._buf)
        self._buf, self._view, self._off = chunk, memoryview(chunk), 0
        return True

    def take(self, n: int) -> bytes:
        off = self._off
        if len(self._buf) - off >= n:
            self._off = off + n
            return self._buf[off : off + n]
        parts = [self._buf[off:]]  # a structure straddles chunks: only its own bytes are joined
        need = n - len(parts[0])
        self._off = len(self._buf)
        while need:
            if not self._advance():
                raise _Truncated(n)
            step = min(need, len(self._buf))
            parts.append(self._buf[:step])
            self._off = step
            need -= step
        return b"".join(parts)

    def byte_or_eof(self) -> int | None:
        while self._off >= len(self._buf):
            if not self._advance():
                return None
        value = self._buf[self._off]
        self._off += 1
        return value

    def at_eof(self) -> bool:
        while self._off >= len(self._buf):
            if not self._advance():
                return True
        return False

    def read_int(self) -> int:
        """``ReadInt`` with a 4-byte int: a sign byte, then the value's bytes, least significant first."""
        buf, off = self._buf, self._off
        if off + 5 > len(buf):
            buf, off = self.take(5), 0
        else:
            self._off = off + 5
        value = _int32(buf[off + 1] | buf[off + 2] << 8 | buf[off + 3] << 16 | buf[off + 4] << 24)
        return _int32(-value) if buf[off] else value

    def read_str(self, keep: int = _KEEP) -> str | None:
        """``ReadStr``: a length (negative: NULL) and that many bytes; keeps the first ``keep`` of them.

        As a C string: pg_restore sees it up to its first NUL byte.
        """
        length = self.read_int()
        if length < 0:
            return None
        kept = self.take(min(length, keep))
        self.skip(length - len(kept))
        return kept.split(b"\0", 1)[0].decode("utf-8", "replace")

    def skip(self, n: int) -> None:
        self.feed(n, None)

    def feed(self, n: int, sink: Callable[[Any], object] | None) -> None:
        """Pass the next ``n`` bytes to ``sink`` (views into the chunks, no copy), or skip them."""
        while n:
            avail = len(self._buf) - self._off
            if not avail:
                if not self._advance():
                    raise _Truncated(n)
                continue
            step = min(n, avail)
            if sink is not None:
                sink(self._view[self._off : self._off + step])
            self._off += step
            n -= step


def _inflater_factory() -> tuple[Callable[[], Any], tuple[Any, ...]]:
    """isal's zlib-compatible inflate, else the standard library's (same streams accepted and refused)."""
    import zlib

    try:
        from isal import isal_zlib
    except ImportError:  # no wheel for this platform: the same checks, at zlib's speed
        return zlib.decompressobj, (zlib.error,)
    return isal_zlib.decompressobj, (isal_zlib.error, zlib.error)


def _header(src: _Bytes) -> Header:
    if src.take(5) != b"PGDMP":
        raise ArchiveMalformed("no PGDMP magic at the start: not a pg_dump custom-format archive")
    major, minor, rev = src.take(3)
    version = (major, minor, rev)
    if not MIN_VERSION <= version <= MAX_VERSION or rev:
        raise ArchiveMalformed(
            f"archive version {major}.{minor}-{rev} in the header (this reader knows 1.12-1.16, pg_dump 9.5-18)",
            stricter=bool(rev) and MIN_VERSION <= (major, minor, 0) <= MAX_VERSION,  # pg_restore 14-18 ignore the rev
        )
    int_size, off_size, fmt = src.take(3)
    if int_size != 4:
        # pg_restore reads other sizes (a warning above 4): an archive of misread integers
        raise ArchiveMalformed(f"integer size {int_size} in the header (pg_dump writes 4)", stricter=True)
    if not 1 <= off_size <= 16:
        raise ArchiveMalformed(f"offset size {off_size} in the header (pg_dump writes 8)", stricter=True)
    if fmt != 1:
        raise ArchiveMalformed(f"format {fmt} in the header (1 is pg_dump's custom format)")
    if version >= (1, 15, 0):
        algorithm = src.take(1)[0]
        if algorithm not in _ALGORITHMS:
            # pg_restore warns, and fails at the first data block (an archive without data passes)
            raise ArchiveMalformed(f"unknown compression algorithm {algorithm} in the header", stricter=True)
        compression = _ALGORITHMS[algorithm]
    else:
        level = src.read_int()
        if not -1 <= level <= 9:  # pg_restore 14/15: "invalid compression code"
            raise ArchiveMalformed(f"invalid compression level {level} in the header")
        compression = "gzip" if level != 0 else "none"
    for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
        src.read_int()
    database = src.read_str() or ""
    server = src.read_str() or ""
    dumped_by = src.read_str() or ""
    return Header(version, int_size, off_size, compression, database, server, dumped_by)


def read_header(prefix: bytes) -> Header | None:
    """The header at the start of ``prefix``, or None when ``prefix`` does not hold all of it yet.

    Raises :class:`ArchiveMalformed` when the bytes cannot be a supported archive's header.
    """
    chunks = [prefix]
    src = _Bytes(lambda: chunks.pop() if chunks else None)
    try:
        return _header(src)
    except _Truncated:
        return None


def _offset_flag(src: _Bytes, off_size: int) -> int:
    flag = src.take(1)[0]
    if flag not in (_OFFSET_NOT_SET, _OFFSET_SET, _OFFSET_NO_DATA):
        raise ArchiveMalformed(f"unexpected data offset flag {flag} in {src.where}")
    raw = src.take(off_size)
    if any(raw[8:]):
        raise ArchiveMalformed(f"file offset too large in {src.where}")
    return flag


def _toc(src: _Bytes, header: Header) -> list[Entry]:
    count = src.read_int()  # pg_restore reads no entry for a negative count; the blocks then fail below
    version = header.version
    entries: list[Entry] = []
    table_data_ids: list[tuple[Entry, str | None]] = []
    max_id = 0
    for number in range(1, count + 1):
        src.where = f"TOC entry {number} of {count}"
        dump_id = src.read_int()
        if dump_id <= 0:
            raise ArchiveMalformed(f"{src.where} has dump ID {dump_id} (pg_dump writes positive IDs)")
        max_id = max(max_id, dump_id)
        had_dumper = src.read_int() != 0
        src.where = f"TOC entry {number} of {count} (dump ID {dump_id})"
        table_oid, oid = src.read_str(), src.read_str()
        tag, desc = src.read_str(), src.read_str()
        if table_oid is None or oid is None or desc is None:
            raise ArchiveMalformed(f"{src.where} lacks its catalog ID or type (pg_restore would crash on it)")
        src.where = f"TOC entry {dump_id} ({desc} {tag})"
        src.read_int()  # section: pg_restore only decides from it what to print
        defn = src.read_str(keep=4096)
        src.read_str()  # drop statement
        src.read_str()  # COPY statement
        namespace = src.read_str()
        src.read_str()  # tablespace
        if version >= (1, 14, 0):
            src.read_str()  # table access method
        if version >= (1, 16, 0):
            src.read_int()  # relkind
        src.read_str()  # owner
        if src.read_str() is None:  # "with OIDs", compared with "true" by pg_restore
            raise ArchiveMalformed(f"{src.where} lacks its WITH OIDS field (pg_restore would crash on it)")
        first_dep: str | None = None
        deps = 0
        while (dep := src.read_str()) is not None:
            if deps == 0:
                first_dep = dep
            deps += 1
        flag = _offset_flag(src, header.off_size)
        _special(desc, defn, src.where)
        entry = Entry(dump_id, desc, tag or "", namespace or "", had_dumper and flag != _OFFSET_NO_DATA)
        entries.append(entry)
        if desc == "TABLE DATA" and deps:
            table_data_ids.append((entry, first_dep))
    for entry, dep in table_data_ids:  # buildTocEntryArrays: the table's ID is one of the archive's
        match = re.match(r"\s*[-+]?\d+", dep or "")
        if match is None or not 0 < int(match.group()) <= max_id:
            raise ArchiveMalformed(f"{entry.name()} names table dump ID {dep!r}, not one of the archive's")
    return entries


def _special(desc: str, defn: str | None, where: str) -> None:
    """What pg_restore parses of the ENCODING, STDSTRINGS and SEARCHPATH items while reading the TOC."""
    if desc == "ENCODING":
        quoted = re.search(r"'([^']+)'", defn or "")
        if defn is None or quoted is None:
            raise ArchiveMalformed(f"invalid ENCODING item in {where}: {defn!r}")
        if re.sub(r"[^0-9a-z]", "", quoted.group(1).lower()) not in _ENCODINGS:
            raise ArchiveMalformed(f"unrecognized encoding {quoted.group(1)!r} in {where}")
    elif desc == "STDSTRINGS":
        quote = (defn or "").find("'")
        if defn is None or quote < 0 or not defn.startswith(("'on'", "'off'"), quote):
            raise ArchiveMalformed(f"invalid STDSTRINGS item in {where}: {defn!r}")
    elif desc == "SEARCHPATH" and defn is None:
        raise ArchiveMalformed(f"SEARCHPATH item without a definition in {where}")


class _Walk:
    """Header, TOC, then every block: :meth:`run` returns a :class:`Summary` or raises ArchiveMalformed."""

    def __init__(self, src: _Bytes) -> None:
        self.src = src
        self.inflated = 0

    def run(self) -> Summary:
        src = self.src
        try:
            header = _header(src)
            if header.compression not in ("gzip", "none"):
                raise ArchiveMalformed(f"{header.compression}-compressed archive: read it with pg_restore")
            entries = _toc(src, header)
            summary = Summary(header=header, entries=len(entries), blocks=0)
            self._blocks(header, [e for e in entries if e.has_data], summary)
        except _Truncated:
            raise ArchiveMalformed(f"the archive ends at byte {src.position}, inside {src.where}") from None
        summary.inflated_bytes = self.inflated
        return summary

    def _blocks(self, header: Header, expected: list[Entry], summary: Summary) -> None:
        src = self.src
        gzip = header.compression == "gzip"
        new_inflater, errors = _inflater_factory() if gzip else (None, ())
        for entry in expected:
            src.where = f"the data block of {entry.name()}"
            start = src.position
            kind = src.byte_or_eof()
            if kind is None:
                raise ArchiveMalformed(f"the archive ends at byte {start}, before {src.where}")
            dump_id = src.read_int()
            if kind not in (BLK_DATA, BLK_BLOBS):
                raise ArchiveMalformed(f"unrecognized block type {kind} at byte {start}, where {src.where} comes")
            if dump_id != entry.dump_id:
                # pg_restore passes over such a block looking for the one it wants
                raise ArchiveMalformed(
                    f"a block of dump ID {dump_id} at byte {start}, where {src.where} comes next",
                    stricter=True,
                )
            size = 0
            if kind == BLK_DATA:
                size += self._stream(new_inflater, errors, src.where)
            else:
                while (oid := src.read_int()) != 0:
                    summary.large_objects += 1
                    size += self._stream(new_inflater, errors, f"large object {oid & 0xFFFFFFFF} of {src.where}")
            summary.blocks += 1
            summary.block_bytes[entry.dump_id] = size
        if not src.at_eof():
            raise ArchiveMalformed(
                f"bytes at {src.position} after the last data block (the TOC has {len(expected)} with data)",
                stricter=True,
            )

    def _stream(self, new_inflater: Callable[[], Any] | None, errors: tuple, what: str) -> int:
        """One length-prefixed chunk sequence (``_CustomReadFunc`` until a zero length), inflated."""
        src = self.src
        stream = _Inflate(new_inflater(), errors, what) if new_inflater is not None else None
        total = 0
        while True:
            at = src.position
            length = src.read_int()
            if length == 0:
                break
            if length < 0:
                raise ArchiveMalformed(f"chunk length {length} at byte {at} in {what}")
            if stream is not None:
                stream.at = src.position
                src.feed(length, stream.add)
            else:
                src.skip(length)
            total += length
        if stream is not None:
            stream.end()
            self.inflated += stream.inflated
        return total


class _Inflate:
    """One block's compressed stream, inflated in batches of its chunks' payloads.

    pg_dump writes 4 KiB chunks; one call into the inflater per chunk cost ~10% more CPU on
    barely compressible text (a 186 MB dump), and each call is a GIL hand-off. But a call that
    inflates more than a few hundred KiB is slower again (its output buffer grows and is
    faulted in: 2.9x the CPU at 16 KiB in, 560 KiB out, on pgbench data), so a batch holds as
    much input as last inflated to about 256 KiB, between 4 and 64 KiB. Batching changes
    nothing in what is accepted: the stream must inflate, end (adler32 checked) and have
    nothing after it.
    """

    MIN_BATCH, MAX_BATCH, OUTPUT = 4 * 1024, 64 * 1024, 256 * 1024

    def __init__(self, inflater: Any, errors: tuple, what: str) -> None:
        self._inflater = inflater
        self._errors = errors
        self._what = what
        self._pending: list[Any] = []
        self._size = 0
        self._first = 0
        self.at = 0  # archive offset of the piece being added
        self.inflated = 0
        self._batch = self.MIN_BATCH

    def add(self, piece: Any) -> None:
        if not self._pending:
            self._first = self.at
        self._pending.append(piece)
        self._size += len(piece)
        self.at += len(piece)
        if self._size >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        where = f"bytes {self._first}-{self.at - 1} of {self._what}"
        if self._inflater.eof:
            raise ArchiveMalformed(f"data after the end of the compressed stream, at {where}")
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        self._size = 0
        try:
            produced = len(self._inflater.decompress(data))
            self.inflated += produced
            self._batch = max(self.MIN_BATCH, min(self.MAX_BATCH, len(data) * self.OUTPUT // max(produced, 1)))
        except self._errors as exc:
            raise ArchiveMalformed(f"the compressed data at {where} do not inflate: {exc}") from None
        if self._inflater.unused_data:
            raise ArchiveMalformed(f"data after the end of the compressed stream, at {where}")

    def end(self) -> None:
        self._flush()
        if not self._inflater.eof:
            raise ArchiveMalformed(f"the compressed stream of {self._what} ends before its end (incomplete data)")


def walk(chunks: Any) -> Summary:
    """Check the archive whose bytes the iterable ``chunks`` yields (bytes); raises ArchiveMalformed."""
    iterator = iter(chunks)
    return _Walk(_Bytes(lambda: next(iterator, None))).run()


class ArchiveReader:
    """The walk in a daemon thread, fed the bytes as they pass (the upload's, the download's).

    :meth:`feed` queues each chunk (bounded: at most ``max_queued`` chunks wait, so a reader that
    falls behind holds the feeder up rather than the memory growing); :meth:`conclude` after the
    last byte returns the :class:`Summary` or raises :class:`ArchiveMalformed`. Inflating
    releases the GIL (isal and zlib both), so the walk runs beside the feeding thread's
    hashing and I/O. A reader that failed early drops whatever is fed after.
    """

    def __init__(self, max_queued: int = 8) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_queued)
        self._done = threading.Event()
        self._stopped = False
        self._closed = False
        self._summary: Summary | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="archive-read", daemon=True)
        self._thread.start()

    def _next(self) -> bytes | None:
        chunk = self._queue.get()
        if self._stopped:
            raise _Stopped
        return chunk

    def _run(self) -> None:
        try:
            self._summary = _Walk(_Bytes(self._next)).run()  # it took the end marker
            self._done.set()
        except BaseException as exc:  # reported by conclude(), in the caller's thread
            self._error = None if isinstance(exc, _Stopped) else exc
            self._done.set()
            self._drain()

    def _drain(self) -> None:
        """Take what is still fed until the end, so that a feeder never blocks on a finished reader."""
        while True:
            try:
                if self._queue.get(timeout=0.5) is None:
                    return
            except queue.Empty:
                if self._stopped or self._closed:
                    return

    def feed(self, chunk: bytes | memoryview) -> None:
        if self._done.is_set() or self._closed:
            return
        # a memoryview is of the caller's reused read buffer: it is copied (1 MiB at a time, ~0.1 ms)
        self._queue.put(chunk if isinstance(chunk, bytes) else bytes(chunk))

    def conclude(self) -> Summary:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._summary is None:
            raise ArchiveMalformed("the archive read was stopped")
        return self._summary

    def kill(self) -> None:
        """Stop the walk (a stall, an abort): nothing is concluded."""
        self._stopped = True
        self._closed = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
