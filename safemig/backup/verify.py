"""Read a stored backup back from S3 and prove it whole: size, SHA-256, and a full pg_restore read.

``pg_restore --list`` alone exits 0 on a truncated archive (it reads only the table of
contents), so the whole object is streamed once, through the SHA-256 and into two
pg_restores: ``--list`` (the table of contents, counted) and ``-f /dev/null`` (every data
block read and decompressed). No temporary copy of the dump is written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from safemig.backup.pgdump import Binary, ChildProcess, child_env
from safemig.backup.store import storage_error
from safemig.errors import CheckFailed, StorageError

STREAM_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Verified:
    """The read-back's findings."""

    size: int
    sha256: str
    toc_entries: int
    table_data_entries: int


class _Feed:
    """A pg_restore fed from our stream; it may stop reading early (``--list``) without harm."""

    def __init__(self, child: ChildProcess, optional_tail: bool) -> None:
        self.child = child
        self.open = True
        self.optional_tail = optional_tail

    def write(self, chunk: bytes) -> None:
        if not self.open:
            return
        try:
            self.child.stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            self.open = False  # it exited; its exit status tells whether that was fine

    def close(self) -> None:
        if self.open:
            try:
                self.child.stdin.close()
            except BrokenPipeError:
                pass
            self.open = False


def iter_object(client: Any, bucket: str, key: str, action: str):
    """Yield the object's bytes in 1 MiB chunks; S3 failures become :class:`StorageError`."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as exc:
        raise storage_error(exc, action, bucket, key) from None
    try:
        while True:
            try:
                chunk = body.read(STREAM_CHUNK)
            except Exception as exc:
                raise storage_error(exc, action, bucket, key) from None
            if not chunk:
                return
            yield chunk
    finally:
        body.close()


def verify_backup(client: Any, bucket: str, key: str, *, size: int, sha256: str, pg_restore: Binary) -> Verified:
    """Check that ``s3://bucket/key`` holds exactly ``size`` bytes hashing to ``sha256`` and a readable archive.

    Raises :class:`StorageError` when it cannot be read back and :class:`CheckFailed` when
    what S3 returns is not the dump that was sent or pg_restore cannot read it.
    """
    env = child_env(None)
    with tempfile.TemporaryFile() as toc_out:
        lister = ChildProcess([pg_restore.path, "--list"], env=env, stdin=-1, stdout=toc_out.fileno())
        reader = ChildProcess([pg_restore.path, "-f", os.devnull], env=env, stdin=-1)
        feeds = [_Feed(lister, optional_tail=True), _Feed(reader, optional_tail=False)]
        digest = hashlib.sha256()
        seen = 0
        try:
            for chunk in iter_object(client, bucket, key, "reading back"):
                digest.update(chunk)
                seen += len(chunk)
                for feed in feeds:
                    feed.write(chunk)
        except BaseException:
            lister.kill()
            reader.kill()
            raise
        for feed in feeds:
            feed.close()
        where = f"s3://{bucket}/{key}"
        if seen != size or digest.hexdigest() != sha256:
            lister.kill()
            reader.kill()
            raise CheckFailed(
                f"{where} read back as {seen} bytes with SHA-256 {digest.hexdigest()}, but {size} bytes with {sha256} were sent",
                hint="the store did not keep the dump intact; the object was deleted, run the backup again",
            )
        for child, what in ((lister, "listing the archive's table of contents"), (reader, "reading the whole archive back")):
            problem = child.failure(what)
            if problem:
                raise CheckFailed(f"{where}: {problem}", hint="the dump is not a readable archive; the object was deleted, run the backup again")
        toc_out.seek(0)
        lines = [line for line in toc_out.read().decode("utf-8", "replace").splitlines() if line.strip() and not line.startswith(";")]
    return Verified(
        size=seen,
        sha256=sha256,
        toc_entries=len(lines),
        table_data_entries=sum(1 for line in lines if " TABLE DATA " in line),
    )


def delete_quietly(client: Any, bucket: str, key: str) -> str | None:
    """Delete an object that must not be trusted; return an error text if even that failed."""
    try:
        client.delete_object(Bucket=bucket, Key=key)
        return None
    except Exception as exc:  # noqa: BLE001
        err: StorageError = storage_error(exc, "deleting", bucket, key)
        return err.message
