"""Prove a backup whole: the archive is readable, and S3 holds exactly those bytes.

Two checks, which together read the whole archive back:

* :class:`ArchiveCheck` - every block of the archive is read and inflated from the very bytes
  being uploaded, while pg_dump runs, so a truncated or corrupt archive fails it
  (``pg_restore --list`` alone exits 0 on a truncated dump: it reads only the table of
  contents). The reader is :mod:`safemig.backup.archive`, in a thread of this process (the
  checks of ``pg_restore -f /dev/null``, at less than half its CPU); lz4 and zstd archives go to
  ``pg_restore -f /dev/null`` as before. It runs beside the upload, costing no wall time after
  it, and a failure aborts the upload, so an unreadable archive never becomes an object.
* :func:`verify_stored` - after completion the object is streamed back from S3: its size and
  SHA-256 must equal what was sent (so the stored bytes are the ones pg_restore read), and
  ``pg_restore --list`` reads its table of contents.

No temporary copy of the dump is written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safemig.backup.pgdump import Binary, ChildProcess, child_env, enlarge_pipe, write_all
from safemig.backup.store import storage_error
from safemig.backup.toc import entries
from safemig.errors import StorageError, ToolError

if TYPE_CHECKING:
    from safemig.backup.archive import Summary

STREAM_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Verified:
    """The read-back's findings."""

    size: int
    sha256: str
    toc_entries: int
    table_data_entries: int


class _Feed:
    """Writes to a child's stdin; a child that stops reading early just stops being fed."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.open = True
        enlarge_pipe(child.stdin.fileno())

    def write(self, chunk: bytes | memoryview) -> None:
        if not self.open:
            return
        try:
            write_all(self.child.stdin, chunk)
        except (BrokenPipeError, ValueError):
            self.open = False  # it exited; its exit status tells whether that was fine

    def close(self) -> None:
        if self.open:
            try:
                self.child.stdin.close()
            except BrokenPipeError:
                pass
            self.open = False


class ArchiveCheck:
    """Every block of a streamed archive read: :mod:`safemig.backup.archive` in a thread, or pg_restore.

    The first bytes (the archive's header) decide: gzip and uncompressed archives are walked by
    :class:`~safemig.backup.archive.ArchiveReader`, fed the bytes as they pass (no pipe, no
    second process); lz4 and zstd ones (pg_dump 16+) by ``pg_restore -f /dev/null`` fed through a
    pipe. Either way :meth:`conclude` raises :class:`ToolError` naming what is unreadable.
    """

    _HEADER_LIMIT = 64 * 1024  # a header is a few hundred bytes; past this, let the reader say what is wrong

    def __init__(self, pg_restore: Binary) -> None:
        self._pg_restore = pg_restore
        self._head: list[bytes] = []
        self._head_size = 0
        self._reader: Any = None  # archive.ArchiveReader once the header chose it
        self._feed: _Feed | None = None
        self.child: ChildProcess | None = None  # pg_restore, for lz4/zstd archives
        self.summary: Summary | None = None  # the reader's findings, once concluded
        self._killed = False

    @property
    def read_by(self) -> str:
        """Who read every block, for the record (meaningful once concluded)."""
        if self._feed is not None:
            return "pg_restore read every block in-stream"
        if self.summary is not None and self.summary.header.compression == "none":
            return "every block read in-stream (uncompressed: no checksum inside the archive)"
        return "every block read and inflated in-stream (zlib's checksum checked)"

    def feed(self, chunk: bytes | memoryview) -> None:
        if self._killed:
            return  # the backup is being stopped: start no reader or pg_restore now
        if self._reader is not None:
            self._reader.feed(chunk)
        elif self._feed is not None:
            self._feed.write(chunk)
        else:
            self._head.append(bytes(chunk))
            self._head_size += len(chunk)
            self._decide(final=False)

    def _decide(self, final: bool) -> None:
        from safemig.backup.archive import ArchiveMalformed, ArchiveReader, read_header

        prefix = b"".join(self._head)
        try:
            header = read_header(prefix)
        except ArchiveMalformed:
            header = None
            final = True  # the reader reports it, with its message
        if header is None and not final and self._head_size < self._HEADER_LIMIT:
            return
        if header is not None and header.compression in ("lz4", "zstd"):
            self.child = ChildProcess([self._pg_restore.path, "-f", os.devnull], env=child_env(None), stdin=-1)
            self._feed = _Feed(self.child)
            self._feed.write(prefix)
        else:
            self._reader = ArchiveReader()
            self._reader.feed(prefix)
        self._head = []

    def conclude(self, where: str) -> None:
        """After the last byte: raise :class:`ToolError` unless the whole archive was read."""
        from safemig.backup.archive import ArchiveMalformed

        if self._reader is None and self._feed is None:
            self._decide(final=True)
        hint = "pg_dump's output is not a readable archive (cut short?); run the backup again"
        if self._reader is not None:
            try:
                self.summary = self._reader.conclude()
            except ArchiveMalformed as exc:
                if exc.stricter:  # pg_restore itself may accept it: say so rather than blame the dump
                    hint = (
                        "safemig's archive reader is stricter than pg_restore here (docs/backup.md, 'The archive"
                        " reader'); if pg_dump wrote this unchanged, please report it; compression = \"lz4\" or"
                        ' "zstd" (pg_dump 16+) has pg_restore read the archive instead'
                    )
                raise ToolError(f"{where}: not a readable archive: {exc.message}", hint=hint) from None
            return
        assert self._feed is not None and self.child is not None
        self._feed.close()
        problem = self.child.failure("reading the whole archive")
        if problem:
            raise ToolError(f"{where}: {problem}", hint=hint)

    def kill(self) -> None:
        self._killed = True
        if self._reader is not None:
            self._reader.kill()
        if self.child is not None:
            self.child.kill()


def iter_object(client: Any, bucket: str, key: str, action: str, response: dict | None = None):
    """Yield the object's bytes in 1 MiB chunks; S3 failures become :class:`StorageError`.

    ``response``, when given, receives the GetObject response's headers (length, metadata).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        got = client.get_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, action, bucket, key) from None
    if response is not None:
        response.update({k: v for k, v in got.items() if k != "Body"})
    body = got["Body"]
    try:
        while True:
            try:
                chunk = body.read(STREAM_CHUNK)
            except (BotoCoreError, OSError) as exc:  # a cut connection, a read timeout
                raise storage_error(exc, action, bucket, key) from None
            if not chunk:
                return
            yield chunk
    finally:
        body.close()


def read_toc(client: Any, bucket: str, key: str, pg_restore: Binary) -> list[str]:
    """The archive's ``pg_restore -l`` lines, read from the start of the object only.

    pg_restore exits once it has the table of contents; the download stops there. The lines
    serve to choose entries (``-L``); the bytes they came from are verified by the restore.
    """
    chunks = iter_object(client, bucket, key, "reading the table of contents of")
    try:
        return toc_from_head(chunks, pg_restore, f"s3://{bucket}/{key}")
    finally:
        chunks.close()


class TocCheck:
    """``pg_restore --list`` over the head of a stream: the archive's table of contents.

    pg_restore exits once it has read the TOC (the first bytes of a custom-format archive);
    from then on :meth:`feed` costs nothing. Fed the bytes being uploaded, it lists the stored
    object without a download, once S3's ETag proved the object is those bytes.
    """

    def __init__(self, pg_restore: Binary) -> None:
        self._out = tempfile.TemporaryFile()
        try:
            self.child = ChildProcess(
                [pg_restore.path, "--list"], env=child_env(None), stdin=-1, stdout=self._out.fileno()
            )
        except BaseException:
            self._out.close()
            raise
        self._feed = _Feed(self.child)

    @property
    def reading(self) -> bool:
        """False once pg_restore stopped reading (it has the TOC, or it failed)."""
        return self._feed.open

    def feed(self, chunk: bytes | memoryview) -> None:
        self._feed.write(chunk)

    def conclude(self, where: str) -> list[str]:
        """The TOC's lines; :class:`ToolError` unless pg_restore listed it and exited 0."""
        self._feed.close()
        try:
            problem = self.child.failure("listing the archive's table of contents")
            if problem:
                raise ToolError(f"{where}: {problem}", hint="the object is not a pg_dump archive pg_restore can read")
            self._out.seek(0)
            return entries(self._out.read().decode("utf-8", "replace"))
        finally:
            self._out.close()

    def kill(self) -> None:
        self.child.kill()
        self._out.close()


def toc_from_head(
    chunks: Iterator[bytes],
    pg_restore: Binary,
    where: str,
    taken: list[bytes] | None = None,
    started: Callable[[ChildProcess], None] | None = None,
) -> list[str]:
    """``pg_restore -l`` of the archive whose bytes ``chunks`` yields, reading only as far as it needs.

    ``taken`` receives every chunk taken from ``chunks``, so that a caller can feed the same
    bytes (then the rest of ``chunks``) to a restore: one download for the TOC and the data.
    ``started`` is handed the ``pg_restore --list`` process (a restore's stall bound stops it).
    """
    lister = TocCheck(pg_restore)
    try:
        if started is not None:
            started(lister.child)
        for chunk in chunks:
            if taken is not None:
                taken.append(chunk)
            lister.feed(chunk)
            if not lister.reading:
                break
    except BaseException:
        lister.kill()
        raise
    return lister.conclude(where)


def list_archive(pg_restore: Binary, path: Path) -> list[str]:
    """``pg_restore -l`` of a local archive file."""
    try:
        done = subprocess.run(
            [pg_restore.path, "--list", str(path)], env=child_env(None), capture_output=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"cannot run {pg_restore.path} --list: {exc}", hint="check backup.pg_bin_dir or PATH") from None
    if done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[-1500:]
        raise ToolError(f"pg_restore --list {path} exited with status {done.returncode}: {said}")
    return entries(done.stdout.decode("utf-8", "replace"))


def verify_stored(client: Any, bucket: str, key: str, *, size: int, sha256: str, pg_restore: Binary) -> Verified:
    """Stream ``s3://bucket/key`` back: exactly ``size`` bytes hashing to ``sha256``, the same
    size and checksum in S3's own answer (Content-Length, metadata), and a readable TOC.

    Raises :class:`StorageError` when it cannot be read back or S3 returns other bytes than
    were sent, :class:`ToolError` when pg_restore cannot list the table of contents.
    """
    where = f"s3://{bucket}/{key}"
    with tempfile.TemporaryFile() as toc_out:
        lister = ChildProcess([pg_restore.path, "--list"], env=child_env(None), stdin=-1, stdout=toc_out.fileno())
        feed = _Feed(lister)
        digest = hashlib.sha256()
        seen = 0
        response: dict = {}
        try:
            for chunk in iter_object(client, bucket, key, "reading back", response):
                digest.update(chunk)
                seen += len(chunk)
                feed.write(chunk)
        except BaseException:
            lister.kill()
            raise
        feed.close()
        if response.get("ContentLength") != size:
            lister.kill()
            raise StorageError(
                f"{where} is described by S3 as {response.get('ContentLength')} bytes, but {size} bytes were sent",
                hint="the store did not keep the object; run the backup again",
            )
        if seen != size or digest.hexdigest() != sha256:
            lister.kill()
            raise StorageError(
                f"{where} read back as {seen} bytes with SHA-256 {digest.hexdigest()},"
                f" but {size} bytes with {sha256} were sent",
                hint="the store did not keep the dump intact; run the backup again",
            )
        problem = lister.failure("listing the archive's table of contents")
        if problem:
            raise ToolError(f"{where}: {problem}", hint="run the backup again")
        toc_out.seek(0)
        lines = entries(toc_out.read().decode("utf-8", "replace"))
    return Verified(
        size=seen,
        sha256=sha256,
        toc_entries=len(lines),
        table_data_entries=sum(1 for line in lines if " TABLE DATA " in line),
    )
