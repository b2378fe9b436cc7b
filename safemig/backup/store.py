"""S3 access for backups: the client, keys and URIs, metadata, listing, and error translation.

boto3 is imported inside the functions (``safemig lint`` must not pay for it). The endpoint
comes from boto3's usual places (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, the profile)
unless ``backup.endpoint_url`` says otherwise, so MinIO, R2 and Ceph work; credentials come
only from boto3's standard chain. Every S3 failure becomes a :class:`StorageError` (exit 3)
whose message names the bucket/key and the operation, with nothing secret in it.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from safemig.backup.settings import BackupSettings
from safemig.errors import StorageError, UsageError
from safemig.redact import redact

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client  # noqa: F401

DUMP_SUFFIX = ".dump"
_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"  # milliseconds kept: two backups in one second must not collide
_KEY_NAME = re.compile(r"^(?P<time>\d{8}T\d{6}(?:\.\d{3})?Z)_v(?P<version>\d+)\.dump$")


def make_client(settings: BackupSettings) -> Any:
    """An S3 client from boto3's standard chain, with a connection pool for the upload threads.

    botocore's own request/response checksums are sent and checked only where the API requires
    them, unless ``backup.sdk_checksums`` is true (see README, section backup).
    """
    import boto3
    from botocore.config import Config as BotoConfig

    boto_config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=settings.concurrency + 4,
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra="safemig",
    )
    if not settings.sdk_checksums:
        # botocore >= 1.36 adds CRC32 checksums (x-amz-checksum-*, aws-chunked bodies) that older
        # MinIO/Ceph RGW refuse; the backup is hashed and read back anyway. "when_required" sends
        # them only where the API demands one.
        try:
            boto_config = boto_config.merge(
                BotoConfig(request_checksum_calculation="when_required", response_checksum_validation="when_required")
            )
        except TypeError:  # botocore < 1.36 knows neither option, and sends no such checksums anyway
            pass
    try:
        return boto3.session.Session().client(
            "s3", endpoint_url=settings.endpoint_url or None, region_name=settings.region or None, config=boto_config
        )
    except Exception as exc:  # botocore.exceptions.BotoCoreError: bad profile, bad endpoint URL
        raise StorageError(
            f"cannot create an S3 client: {redact(str(exc))}",
            hint="check AWS_PROFILE, AWS_ENDPOINT_URL and backup.endpoint_url",
        ) from None


def storage_error(exc: BaseException, action: str, bucket: str, key: str | None = None) -> StorageError:
    """Translate a boto3/botocore failure into one clear, redacted :class:`StorageError`."""
    from botocore import exceptions as bex

    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, bex.NoCredentialsError):
        return StorageError(
            f"no AWS credentials found while {action} {where}",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an instance/task role is available",
        )
    if isinstance(
        exc, (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ConnectionClosedError, bex.ReadTimeoutError)
    ):
        return StorageError(
            f"cannot reach S3 while {action} {where}: {redact(str(exc))}",
            hint="check the network, AWS_ENDPOINT_URL / backup.endpoint_url and the region",
        )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = redact(str(error.get("Message") or code))
        if code == "NoSuchBucket" or (code == "404" and key is None):
            return StorageError(
                f"bucket {bucket} does not exist (while {action} {where})",
                hint="create it, or fix backup.bucket / the endpoint (AWS_ENDPOINT_URL, backup.endpoint_url)",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(
                f"{where} does not exist (while {action})",
                hint="list the env's backups with `safemig backups --env ENV`",
            )
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return StorageError(
                f"access denied to {where} while {action}: {message}",
                hint="the credentials in use need s3:PutObject, s3:GetObject, s3:ListBucket, s3:AbortMultipartUpload and s3:DeleteObject on the bucket (and kms:GenerateDataKey/kms:Decrypt with SSE-KMS)",
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return StorageError(
                f"S3 rejected the credentials ({code}) while {action} {where}",
                hint="check AWS_PROFILE / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or refresh the session)",
            )
        return StorageError(
            f"S3 error {code or status} while {action} {where}: {message}",
            hint="see the S3 error code in the AWS documentation",
        )
    if isinstance(exc, bex.BotoCoreError):
        return StorageError(
            f"S3 failed while {action} {where}: {redact(str(exc))}",
            hint="check the network, the endpoint and the credentials",
        )
    return StorageError(f"S3 failed while {action} {where}: {redact(type(exc).__name__ + ': ' + str(exc))}")


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); anything else is a usage error."""
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
        raise UsageError(
            f"{uri!r} is not an s3://BUCKET/KEY URI", hint="copy the URI `safemig backup` printed, or use `latest`"
        )
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise UsageError(
            f"{uri!r} is not an s3://BUCKET/KEY URI", hint="copy the URI `safemig backup` printed, or use `latest`"
        )
    return bucket, key


def backup_key(settings: BackupSettings, env: str, when: datetime, newest_version: int | None) -> str:
    """``prefix + env + "/" + UTC timestamp + "_v<newest applied version>.dump"`` (v0: no migration applied)."""
    utc = when.astimezone(UTC)
    stamp = utc.strftime("%Y%m%dT%H%M%S") + f".{utc.microsecond // 1000:03d}Z"
    return f"{settings.env_prefix(env)}{stamp}_v{newest_version or 0}{DUMP_SUFFIX}"


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """S3 user metadata travels as HTTP headers: ASCII only, so values are percent-encoded."""
    return {k: quote(str(v), safe=" .:-_/+=@,") for k, v in values.items() if v is not None}


def decode_metadata(meta: dict[str, str]) -> dict[str, str]:
    return {k.lower(): unquote(v) for k, v in meta.items()}


def _parse_stamp(stamp: str) -> datetime:
    fmt = _TIME_FORMAT if "." in stamp else "%Y%m%dT%H%M%SZ"
    return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)


@dataclass(frozen=True)
class BackupInfo:
    """One backup in S3, as ``safemig backups`` lists it."""

    uri: str
    bucket: str
    key: str
    created: datetime
    size: int
    newest_version: int | None
    sha256: str | None  # None: the object has no verified checksum (an interrupted backup)
    label: str | None
    metadata: dict[str, str]

    @property
    def verified(self) -> bool:
        return bool(self.sha256)


def _info(bucket: str, key: str, head: dict[str, Any]) -> BackupInfo:
    meta = decode_metadata(head.get("Metadata", {}))
    match = _KEY_NAME.match(key.rsplit("/", 1)[-1])
    created = _parse_stamp(match.group("time")) if match else head["LastModified"]
    version = meta.get("newest-version") or (match.group("version") if match else "")
    return BackupInfo(
        uri=f"s3://{bucket}/{key}",
        bucket=bucket,
        key=key,
        created=created,
        size=int(head.get("ContentLength", 0)),
        newest_version=int(version) if version and version.isdigit() and int(version) else None,
        sha256=meta.get("sha256") or None,
        label=meta.get("label") or None,
        metadata=meta,
    )


def head_backup(client: Any, bucket: str, key: str) -> BackupInfo:
    """Describe one backup object (size, metadata); a missing one is a :class:`StorageError`."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise storage_error(exc, "reading", bucket, key) from None
    return _info(bucket, key, head)


def list_env_backups(client: Any, settings: BackupSettings, env: str) -> list[BackupInfo]:
    """Every ``.dump`` object directly under the env's prefix, newest first."""
    prefix = settings.env_prefix(env)
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=prefix, Delimiter="/"
        ):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(DUMP_SUFFIX)]
    except Exception as exc:
        raise storage_error(exc, "listing", settings.bucket, prefix) from None
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda k: head_backup(client, settings.bucket, k), keys))
    return sorted(infos, key=lambda i: (i.created, i.key), reverse=True)


def list_backups(config: Any, env: str) -> list[BackupInfo]:
    """The env's backups in S3, newest first (``safemig backups``)."""
    from safemig.backup.settings import load_settings

    settings = load_settings(config)
    config.env(env)  # an unknown env is a usage error, not an empty list
    return list_env_backups(make_client(settings), settings, env)


def put_next_to(backup_uri: str, filename: str, body: bytes, *, config: Any) -> str:
    """Store a small object (e.g. a deploy record) beside a backup; return its ``s3://`` URI."""
    from safemig.backup.settings import load_settings

    if not filename or "/" in filename:
        raise UsageError(f"{filename!r} is not a plain file name", hint="pass a name like deploy-record.json")
    settings = load_settings(config)
    bucket, key = parse_uri(backup_uri)
    directory = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    target = directory + filename
    try:
        make_client(settings).put_object(Bucket=bucket, Key=target, Body=body, **settings.put_args())
    except Exception as exc:
        raise storage_error(exc, "writing", bucket, target) from None
    return f"s3://{bucket}/{target}"
