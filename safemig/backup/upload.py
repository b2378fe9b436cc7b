"""Stream a byte source into one S3 object with the multipart API: bounded memory, all or nothing.

Why not ``upload_fileobj``: the transfer manager completes the upload as soon as its input
ends, and end of input is not success (a killed pg_dump also ends its output). Here the
caller's ``finish`` check (pg_dump's exit status) runs between the last byte and
``CompleteMultipartUpload``, and *any* failure - the source, ``finish``, S3, Ctrl-C, a stall -
aborts the upload, so no object and no orphaned parts are left behind.

Integrity: each part is sent with its ``Content-MD5`` (S3 refuses a part that arrives
different), and the multipart ETag S3 returns is compared with the one computed from those
MD5s (:attr:`Uploaded.etag_matches`): where S3's ETag is the MD5 scheme (no SSE-KMS), that
proves S3 assembled exactly the bytes hashed, without reading them back.

Memory: at most ``concurrency`` parts are in flight plus the one being filled, whatever the
size of the source (one read buffer, reused; each part is copied out of it to be sent). The
part size is fixed up front (S3 rejects parts under 5 MiB only at completion, allows 10,000
parts, and some S3-compatible stores want equal parts).

Start-up: the client may be handed over as a :class:`~concurrent.futures.Future` still being
built (botocore takes ~0.2 s to load). Reading the source starts at once, so pg_dump is never
held up on a full pipe meanwhile; the upload is created, and the parts sent, once the client
is there.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from safemig.backup.settings import S3_MAX_PARTS
from safemig.backup.store import storage_error
from safemig.backup.watchdog import DaemonPool, Watchdog, run_bounded
from safemig.errors import SafemigError, StorageError

_READ_CHUNK = 1024 * 1024
_ABORT_WAIT_S = 30.0


@dataclass(frozen=True)
class Uploaded:
    """What was stored: size and SHA-256 of exactly the bytes read, and the part count."""

    size: int
    sha256: str
    parts: int
    etag: str
    expected_etag: str = ""  # the multipart ETag computed from the parts' MD5s
    version_id: str | None = None

    @property
    def etag_matches(self) -> bool:
        return bool(self.etag) and self.etag == self.expected_etag


class Readable(Protocol):
    """A byte source read into a caller's buffer (a pipe's raw file object)."""

    def readinto(self, buffer: Any, /) -> int | None: ...


class Stalled(StorageError):
    """No progress on the dump or the upload for ``backup.stall_timeout`` (exit 3)."""


def stream_to_s3(
    client: Any,
    source: Readable,
    *,
    bucket: str,
    key: str,
    part_size: int,
    concurrency: int,
    extra_args: dict[str, Any],
    finish: Callable[[], None],
    on_chunk: Callable[[memoryview], None] | None = None,
    on_part: Callable[[int], None] | None = None,
    watchdog: Watchdog | None = None,
    stalled: Callable[[], StorageError] | None = None,
) -> Uploaded:
    """Upload everything ``source`` yields to ``s3://bucket/key``; return size and checksum.

    ``client`` is an S3 client or a Future of one. ``finish`` is called after the source's
    end and before completion; it raises to refuse the object (e.g. pg_dump exited non-zero).
    ``on_chunk`` sees every chunk as it is read (progress, the archive check), ``on_part``
    every part number sent (tests use it to inject failures). With a ``watchdog``, every chunk
    and stored part counts as progress, and once it fired the error ``stalled()`` builds is
    raised (and the upload aborted).
    """
    pool = DaemonPool(concurrency, "s3-part")
    sender = _Sender(client, pool, bucket, key, watchdog, stalled)
    sender.start(extra_args)
    try:
        return sender.send_all(source, part_size, concurrency, finish, on_chunk, on_part)
    except BaseException as exc:
        wait_s = min(_ABORT_WAIT_S, watchdog.timeout) if watchdog is not None else _ABORT_WAIT_S
        # S3: a part still uploading during the abort may succeed after it; let those end first
        # (bounded: against a frozen S3 they never do)
        sender.settle(wait_s)
        not_started = sender.creation_error()
        if not_started is not None:  # no upload exists: its own error, nothing to abort
            raise not_started from None
        upload_id = sender.upload_id()
        if upload_id is not None:
            aborted = abort(sender.client, bucket, key, upload_id, wait_s=wait_s)
        else:  # never created, unless S3 is still answering the request that creates it
            aborted = sender.created.done()
        if isinstance(exc, SafemigError):
            where = f"s3://{bucket}/{key}"
            upload = f"the upload {upload_id[:16]}..." if upload_id else "an upload being created"
            if aborted:
                exc.hint = f"{exc.hint or ''} (the upload was aborted: nothing was stored)".strip()
            else:
                exc.hint = (
                    f"{exc.hint or ''} ({upload} to {where} could not be aborted: its"
                    " parts stay in S3 until the bucket's AbortIncompleteMultipartUpload lifecycle rule removes them"
                    " (see README, section backup); no object was created)"
                ).strip()
        raise
    finally:
        pool.shutdown()


def abort(client: Any, bucket: str, key: str, upload_id: str, wait_s: float = _ABORT_WAIT_S) -> bool:
    """Abort a multipart upload so S3 frees its parts; ``False`` if that failed or took too long."""
    from botocore.exceptions import BotoCoreError, ClientError

    def attempt() -> bool:
        for _ in range(3):
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return True
            except BotoCoreError:
                pass
        return False

    finished, result, _ = run_bounded(attempt, wait_s)
    return bool(finished and result)


class _Sender:
    """The parts' side of the upload: daemon threads sending, the caller's thread reading."""

    def __init__(self, client: Any, pool: DaemonPool, bucket: str, key: str, watchdog, stalled) -> None:
        self._client, self.pool, self.bucket, self.key = client, pool, bucket, key
        self.watchdog: Watchdog | None = watchdog
        self.stalled = stalled
        self.etags: dict[int, str] = {}
        self.md5s: dict[int, bytes] = {}
        self.in_flight: set[Future] = set()
        self.created: Future[str] = Future()

    @property
    def client(self) -> Any:
        """The S3 client (resolved: only used once the upload was created with it)."""
        return self._client.result() if isinstance(self._client, Future) else self._client

    def start(self, extra_args: dict[str, Any]) -> None:
        """Create the multipart upload in a worker, as soon as the client exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        def create() -> str:
            try:
                client = self.client
                return str(client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **extra_args)["UploadId"])
            except (ClientError, BotoCoreError) as exc:
                raise storage_error(exc, "starting the upload to", self.bucket, self.key) from None

        self.created = self.pool.submit(create)
        self.in_flight.add(self.created)

    def creation_error(self) -> BaseException | None:
        """Why the upload could not be created (the client or CreateMultipartUpload failed), if it failed."""
        if not self.created.done() or self.created.cancelled():
            return None
        return self.created.exception()

    def upload_id(self) -> str | None:
        """The upload's id, or None when it was not (or not yet) created."""
        if not self.created.done() or self.created.cancelled() or self.created.exception() is not None:
            return None
        return self.created.result()

    def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the requests being sent to end (their outcome no longer matters)."""
        from concurrent.futures import wait

        running = {future for future in self.in_flight if not future.done()}
        if running:
            wait(running, timeout=timeout)

    def check(self) -> None:
        if self.watchdog is not None and self.watchdog.stalled.is_set():
            raise self.stalled() if self.stalled else Stalled(f"no progress uploading to s3://{self.bucket}/{self.key}")
        failed = self.creation_error()
        if failed is not None:
            raise failed

    def call(self, fn: Callable[[], Any], action: str) -> Any:
        """Run one S3 request in a worker, waiting for it in a way a stall can interrupt."""
        from botocore.exceptions import BotoCoreError, ClientError

        def guarded() -> Any:
            try:
                return fn()
            except (ClientError, BotoCoreError) as exc:
                raise storage_error(exc, action, self.bucket, self.key) from None

        future = self.pool.submit(guarded)
        return self._wait(future)

    def _wait(self, future: Future) -> Any:
        if self.watchdog is None:
            return future.result()
        return self.watchdog.wait(future, self.check)

    def _send(self, number: int, body: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        upload_id = self.created.result()  # created first: the pool takes jobs in order
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        try:
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=base64.b64encode(md5).decode(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, f"uploading part {number} to", self.bucket, self.key) from None
        self.etags[number] = response["ETag"]
        self.md5s[number] = md5
        if self.watchdog is not None:
            self.watchdog.beat()

    def _fill(self, source: Readable, buf: bytearray, digest: Any, on_chunk) -> int:
        """Read into ``buf`` until it is full or the source ends; hash what was read."""
        view = memoryview(buf)
        filled = 0
        size = len(buf)
        while filled < size:
            n = source.readinto(view[filled : min(size, filled + _READ_CHUNK)])
            self.check()  # a stall stops pg_dump, which ends this stream: it must not look like success
            if not n:
                break
            if self.watchdog is not None:
                self.watchdog.beat()
            chunk = view[filled : filled + n]
            digest.update(chunk)
            if on_chunk is not None:
                on_chunk(chunk)
            chunk.release()
            filled += n
        view.release()
        return filled

    def send_all(self, source, part_size, concurrency, finish, on_chunk, on_part) -> Uploaded:
        digest = hashlib.sha256()
        total = 0
        pending: set[Future] = set()

        def reap(block: bool) -> None:
            for future in [f for f in pending if f.done()]:
                pending.discard(future)
                future.result()  # re-raises the part's StorageError here, in the reading thread
            if block and pending:
                first = next(iter(pending))
                self._wait(first)
                pending.discard(first)
                first.result()

        number = 0
        buf = bytearray(part_size)  # one read buffer, filled again for every part
        try:
            while True:
                filled = self._fill(source, buf, digest, on_chunk)
                if filled == 0 and number > 0:
                    break
                number += 1
                if number > S3_MAX_PARTS:
                    raise StorageError(
                        f"the dump outgrew {S3_MAX_PARTS} parts of {part_size // (1024 * 1024)} MiB uploading to"
                        f" s3://{self.bucket}/{self.key}",
                        hint="raise backup.part_size_mb",
                    )
                total += filled
                while len(pending) >= concurrency:
                    reap(block=True)
                if on_part is not None:
                    on_part(number)
                # botocore documents Body as bytes or a seekable file, not bytearray: moto's in-process
                # mock rejects a bytearray. The copy (~2 ms per 8 MiB) frees the read buffer at once.
                body = bytes(buf) if filled == part_size else bytes(memoryview(buf)[:filled])
                future = self.pool.submit(self._send, number, body)
                del body
                pending.add(future)
                self.in_flight.add(future)
                reap(block=False)
                if filled < part_size:
                    break
            self.check()
            finish()  # the producer's verdict comes before the object exists
            while pending:
                reap(block=True)
            upload_id = self._wait(self.created)
        finally:
            for future in pending:
                future.cancel()

        parts = [{"PartNumber": n, "ETag": self.etags[n]} for n in sorted(self.etags)]
        response = self.call(
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
            "completing the upload to",
        )
        combined = hashlib.md5(b"".join(self.md5s[n] for n in sorted(self.md5s)), usedforsecurity=False).hexdigest()
        return Uploaded(
            size=total,
            sha256=digest.hexdigest(),
            parts=len(parts),
            etag=str(response.get("ETag", "")).strip('"'),
            expected_etag=f"{combined}-{len(parts)}",
            version_id=response.get("VersionId"),
        )
