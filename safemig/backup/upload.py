"""Stream a byte source into one S3 object with the multipart API: bounded memory, all or nothing.

Why not ``upload_fileobj``: the transfer manager completes the upload as soon as its input
ends, and end of input is not success (a killed pg_dump also ends its output). Here the
caller's ``finish`` check (pg_dump's exit status) runs between the last byte and
``CompleteMultipartUpload``, and *any* failure - the source, ``finish``, S3, Ctrl-C -
aborts the upload, so no object and no orphaned parts are left behind.

Memory: at most ``concurrency`` parts are in flight plus the one being filled, whatever the
size of the source. The part size is fixed up front (S3 rejects parts under 5 MiB only at
completion, allows 10,000 parts, and some S3-compatible stores want equal parts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import IO, Any

from safemig.backup.settings import S3_MAX_PARTS
from safemig.backup.store import storage_error
from safemig.errors import SafemigError, StorageError

_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Uploaded:
    """What was stored: size and SHA-256 of exactly the bytes read, and the part count."""

    size: int
    sha256: str
    parts: int
    etag: str


def stream_to_s3(
    client: Any,
    source: IO[bytes],
    *,
    bucket: str,
    key: str,
    part_size: int,
    concurrency: int,
    extra_args: dict[str, Any],
    finish: Callable[[], None],
    on_chunk: Callable[[memoryview], None] | None = None,
    on_part: Callable[[int], None] | None = None,
) -> Uploaded:
    """Upload everything ``source`` yields to ``s3://bucket/key``; return size and checksum.

    ``finish`` is called after the source's end and before completion; it raises to
    refuse the object (e.g. pg_dump exited non-zero). ``on_chunk`` sees every chunk as it
    is read (progress, the archive check), ``on_part`` every part number sent (tests use it
    to inject failures).
    """
    try:
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra_args)["UploadId"]
    except Exception as exc:
        raise storage_error(exc, "starting the upload to", bucket, key) from None
    try:
        return _send_parts(client, source, bucket, key, upload_id, part_size, concurrency, finish, on_chunk, on_part)
    except BaseException as exc:
        if not abort(client, bucket, key, upload_id) and isinstance(exc, SafemigError):
            exc.hint = (
                f"{exc.hint or ''} The upload {upload_id[:16]}... could not be aborted either; the bucket's"
                " AbortIncompleteMultipartUpload lifecycle rule will remove its parts (see README, section backup)."
            ).strip()
        raise


def abort(client: Any, bucket: str, key: str, upload_id: str) -> bool:
    """Abort a multipart upload so S3 frees its parts (botocore retries too); never raises."""
    for _ in range(3):
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            return True
        except Exception as exc:  # noqa: BLE001 - the original failure is the one to report
            response = getattr(exc, "response", None) or {}
            if response.get("Error", {}).get("Code") == "NoSuchUpload":
                return True
    return False


def _fill(source: IO[bytes], buf: bytearray, digest: Any, on_chunk: Callable[[memoryview], None] | None) -> int:
    """Read into ``buf`` until it is full or the source ends; hash what was read."""
    view = memoryview(buf)
    filled = 0
    size = len(buf)
    while filled < size:
        n = source.readinto(view[filled : min(size, filled + _READ_CHUNK)])
        if not n:
            break
        chunk = view[filled : filled + n]
        digest.update(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
        chunk.release()
        filled += n
    view.release()
    return filled


def _send_parts(client, source, bucket, key, upload_id, part_size, concurrency, finish, on_chunk, on_part) -> Uploaded:
    digest = hashlib.sha256()
    total = 0
    etags: dict[int, str] = {}
    pending: set[Future] = set()

    def send(number: int, body: bytes) -> None:
        try:
            response = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        except Exception as exc:
            raise storage_error(exc, f"uploading part {number} to", bucket, key) from None
        etags[number] = response["ETag"]

    def reap(block: bool) -> None:
        nonlocal pending
        if not pending:
            return
        done, pending = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # re-raises the part's StorageError here, in the reading thread

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-part")
    try:
        number = 0
        while True:
            buf = bytearray(part_size)
            filled = _fill(source, buf, digest, on_chunk)
            if filled == 0 and number > 0:
                break
            number += 1
            if number > S3_MAX_PARTS:
                raise StorageError(
                    f"the dump outgrew {S3_MAX_PARTS} parts of {part_size // (1024 * 1024)} MiB uploading to s3://{bucket}/{key}",
                    hint="raise backup.part_size_mb",
                )
            total += filled
            while len(pending) >= concurrency:
                reap(block=True)
            if on_part is not None:
                on_part(number)
            # botocore documents Body as bytes or a seekable file, not bytearray: moto 5.2.5's
            # in-process mock rejects a bytearray. One copy of the part is cheap beside sending it.
            pending.add(pool.submit(send, number, bytes(buf) if filled == part_size else bytes(buf[:filled])))
            del buf
            reap(block=False)
            if filled < part_size:
                break
        finish()  # the producer's verdict comes before the object exists
        while pending:
            reap(block=True)
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)

    parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
    try:
        response = client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except Exception as exc:
        raise storage_error(exc, "completing the upload to", bucket, key) from None
    return Uploaded(
        size=total, sha256=digest.hexdigest(), parts=len(parts), etag=str(response.get("ETag", "")).strip('"')
    )
