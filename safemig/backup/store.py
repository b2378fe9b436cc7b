"""S3 access for backups: the client, keys and URIs, metadata, listing, and error translation.

boto3 is imported inside the functions (``safemig lint`` must not pay for it). The endpoint
comes from boto3's usual places (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, the profile)
unless ``backup.endpoint_url`` says otherwise, so MinIO, R2 and Ceph work; credentials come
only from boto3's standard chain. Every S3 failure becomes a :class:`StorageError` (exit 3)
whose message names the bucket/key and the operation, with nothing secret in it.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from safemig.backup.settings import BackupSettings
from safemig.errors import StorageError, UsageError
from safemig.redact import redact

DUMP_SUFFIX = ".dump"
_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"  # milliseconds kept: two backups in one second must not collide
_KEY_NAME = re.compile(r"^(?P<time>\d{8}T\d{6}(?:\.\d{3})?Z)_v(?P<version>\d+)\.dump$")


def make_client(settings: BackupSettings) -> Any:
    """An S3 client from boto3's standard chain, with a connection pool for the upload threads.

    botocore's own request/response checksums are sent and checked only where the API requires
    them, unless ``backup.sdk_checksums`` is true (see README, section backup).
    """
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError

    boto_config = BotoConfig(
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=settings.concurrency + 4,
        connect_timeout=min(10.0, settings.stall_timeout),
        # a request silent for twice the stall timeout is past saving; the stall watchdog fires first
        read_timeout=min(120.0, 2 * settings.stall_timeout),
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
        # botocore's own client, not boto3's wrapper: the same client and credential chain, without
        # loading s3transfer and boto3's injected helpers (~0.1 s; none of them is used)
        return _botocore_session().create_client(
            "s3", endpoint_url=settings.endpoint_url or None, region_name=settings.region or None, config=boto_config
        )
    except (BotoCoreError, ValueError) as exc:  # bad profile, bad endpoint URL (ValueError: "Invalid endpoint")
        raise StorageError(
            f"cannot create an S3 client: {redact(str(exc))}",
            hint="check AWS_PROFILE, AWS_ENDPOINT_URL and backup.endpoint_url",
        ) from None


_DATA_LOADER: Any = None


def _botocore_session() -> Any:
    """A fresh botocore session (credentials, profile and env read anew, as before) sharing one
    data loader per process: the S3 service model and endpoint rules are parsed once, not per
    client (~0.1 s each; a deploy makes one client in gate 3 and another in gate 4)."""
    import botocore.session

    global _DATA_LOADER
    session = botocore.session.Session()
    if _DATA_LOADER is None:
        _DATA_LOADER = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _DATA_LOADER)
    return session


def storage_error(exc: BaseException, action: str, bucket: str, key: str | None = None) -> StorageError:
    """Translate a boto3/botocore failure into one clear, redacted :class:`StorageError`."""
    from botocore import exceptions as bex

    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, bex.NoCredentialsError):
        return StorageError(
            f"no AWS credentials found while {action} {where}",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an instance/task role"
            " is available",
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
                hint="the credentials in use need s3:PutObject, s3:GetObject, s3:ListBucket,"
                " s3:ListBucketMultipartUploads, s3:AbortMultipartUpload and s3:DeleteObject (s3:ListBucketVersions"
                " and s3:DeleteObjectVersion on a versioned bucket) on the bucket, and kms:GenerateDataKey/kms:Decrypt"
                " with SSE-KMS",
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


MANIFEST_SUFFIX = ".manifest.json"
GLOBALS_SUFFIX = ".globals.sql"
MANIFEST_FORMAT = "safemig-backup/1"


def manifest_key(key: str) -> str:
    """The small sidecar object that records a dump's checksum: ``KEY.manifest.json``.

    Why a sidecar and not the object's metadata: S3 metadata can only be changed by copying
    the object onto itself, which on a versioned bucket keeps a second full version.
    """
    return key + MANIFEST_SUFFIX


def globals_key(key: str) -> str:
    """Where ``pg_dumpall --globals-only`` (the roles) is stored beside a dump."""
    return key + GLOBALS_SUFFIX


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
    recorded_size: int | None = None
    problem: str | None = None  # why the object is not what was recorded (size, version, ETag)
    version_id: str | None = None
    manifest: dict[str, Any] | None = None
    last_modified: datetime | None = None

    @property
    def verified(self) -> bool:
        """A recorded checksum, and the object still is what was recorded: offered for restore."""
        return bool(self.sha256) and self.problem is None

    @property
    def expected_size(self) -> int:
        """The object's size as recorded at backup time, or S3's for a backup that recorded none."""
        return self.recorded_size if self.recorded_size is not None else self.size

    @property
    def status(self) -> str:
        if not self.sha256:
            return "unverified"
        return "inconsistent" if self.problem else "verified"

    @property
    def globals(self) -> dict[str, Any] | None:
        """The stored roles (key, sha256, size), if the backup has them."""
        found = (self.manifest or {}).get("globals")
        return found if isinstance(found, dict) else None


def _consistency(head: dict[str, Any], manifest: dict[str, Any] | None, recorded_size: int | None) -> str | None:
    size = int(head.get("ContentLength", 0))
    if recorded_size is not None and size != recorded_size:
        return f"size {size} bytes differs from the {recorded_size} recorded"
    if manifest:
        version = manifest.get("version_id")
        if version and head.get("VersionId") and head["VersionId"] != version:
            return f"version {head['VersionId']} is not the recorded {version} (overwritten?)"
        etag = manifest.get("etag")
        if etag and str(head.get("ETag", "")).strip('"') != etag:
            return f"ETag {str(head.get('ETag', '')).strip(chr(34))} differs from the recorded {etag} (overwritten?)"
    return None


def _info(bucket: str, key: str, head: dict[str, Any], manifest: dict[str, Any] | None) -> BackupInfo:
    meta = decode_metadata(head.get("Metadata", {}))
    if manifest:
        meta = {**meta, **{k: str(v) for k, v in (manifest.get("metadata") or {}).items()}}
        sha256 = str(manifest.get("sha256") or "") or None
        recorded: Any = manifest.get("size")
    else:  # backups made before the manifest: the checksum was copied into the object's metadata
        sha256 = meta.get("sha256") or None
        recorded = meta.get("size")
    recorded_size = int(recorded) if str(recorded or "").isdigit() else None
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
        sha256=sha256,
        label=meta.get("label") or None,
        metadata=meta,
        recorded_size=recorded_size,
        problem=_consistency(head, manifest, recorded_size) if sha256 else None,
        version_id=head.get("VersionId"),
        manifest=manifest,
        last_modified=head.get("LastModified"),
    )


def backup_info(bucket: str, key: str, response: dict[str, Any], manifest: dict[str, Any] | None) -> BackupInfo:
    """Describe a backup from a GetObject's response headers (the same fields as HeadObject's) and its
    manifest: the restore reads both at once instead of a HEAD before the GET."""
    return _info(bucket, key, response, manifest)


def read_manifest(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The dump's manifest, or ``None`` when there is none (the backup was never verified)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = client.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read()
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise storage_error(exc, "reading", bucket, manifest_key(key)) from None
    except BotoCoreError as exc:
        raise storage_error(exc, "reading", bucket, manifest_key(key)) from None
    try:
        found = json.loads(body)
    except ValueError:
        return None
    return found if isinstance(found, dict) and found.get("format") == MANIFEST_FORMAT else None


def write_manifest(client: Any, settings: BackupSettings, key: str, manifest: dict[str, Any]) -> None:
    """Store the manifest (the last step of a backup: its existence means "verified")."""
    from botocore.exceptions import BotoCoreError, ClientError

    body = json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=1, sort_keys=True).encode()
    try:
        client.put_object(
            Bucket=settings.bucket,
            Key=manifest_key(key),
            Body=body,
            ContentType="application/json",
            **settings.put_args(),
        )
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "recording the checksum of", settings.bucket, key) from None


def head_backup(client: Any, bucket: str, key: str) -> BackupInfo:
    """Describe one backup object (size, manifest); a missing one is a :class:`StorageError`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "reading", bucket, key) from None
    return _info(bucket, key, head, read_manifest(client, bucket, key))


def list_env_backups(client: Any, settings: BackupSettings, env: str) -> list[BackupInfo]:
    """Every ``.dump`` object directly under the env's prefix, newest first."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = settings.env_prefix(env)
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=prefix, Delimiter="/"
        ):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(DUMP_SUFFIX)]
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "listing", settings.bucket, prefix) from None
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda k: head_backup(client, settings.bucket, k), keys))
    return sorted(infos, key=lambda i: (i.created, i.key), reverse=True)


@dataclass(frozen=True)
class OpenUpload:
    """A multipart upload never completed nor aborted (a killed backup): S3 bills its parts."""

    key: str
    upload_id: str
    initiated: datetime

    def age_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.initiated).total_seconds()


def list_open_uploads(client: Any, settings: BackupSettings, env: str) -> list[OpenUpload]:
    """Multipart uploads under the env's prefix that are still open, oldest first."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = settings.env_prefix(env)
    found: list[OpenUpload] = []
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=settings.bucket, Prefix=prefix):
            found += [OpenUpload(u["Key"], u["UploadId"], u["Initiated"]) for u in page.get("Uploads", [])]
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "listing the open uploads under", settings.bucket, prefix) from None
    return sorted(found, key=lambda u: u.initiated)


def delete_all_versions(client: Any, bucket: str, key: str) -> str | None:
    """Delete ``key`` for good: every version and delete marker on a versioned bucket.

    Returns an error text if that failed (the caller reports it beside the original error).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        doomed: list[dict[str, str]] = []
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if item["Key"] == key:
                    doomed.append({"Key": key, "VersionId": item["VersionId"]})
        for item in doomed:
            client.delete_object(Bucket=bucket, Key=key, VersionId=item["VersionId"])
        if not doomed:
            client.delete_object(Bucket=bucket, Key=key)
        return None
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
            "NotImplemented",
            "MethodNotAllowed",
        ):
            try:  # a store without versioning support
                client.delete_object(Bucket=bucket, Key=key)
                return None
            except (ClientError, BotoCoreError) as again:
                return storage_error(again, "deleting", bucket, key).message
        return storage_error(exc, "deleting", bucket, key).message


def list_backups(config: Any, env: str) -> list[BackupInfo]:
    """The env's backups in S3, newest first (``safemig backups``)."""
    from safemig.backup.settings import load_settings

    settings = load_settings(config)
    config.env(env)  # an unknown env is a usage error, not an empty list
    return list_env_backups(make_client(settings), settings, env)


def list_backup_uploads(config: Any, env: str) -> list[OpenUpload]:
    """The env's open multipart uploads (``safemig backups``)."""
    from safemig.backup.settings import load_settings

    settings = load_settings(config)
    return list_open_uploads(make_client(settings), settings, env)


def put_object(client: Any, settings: BackupSettings, key: str, body: bytes, content_type: str) -> None:
    """A small object (roles, a record) with the backups' encryption and storage class."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType=content_type, **settings.put_args())
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "writing", settings.bucket, key) from None


def put_next_to(backup_uri: str, filename: str, body: bytes, *, config: Any) -> str:
    """Store a small object (e.g. a deploy record) beside a backup; return its ``s3://`` URI."""
    from safemig.backup.settings import load_settings

    if not filename or "/" in filename:
        raise UsageError(f"{filename!r} is not a plain file name", hint="pass a name like deploy-record.json")
    settings = load_settings(config)
    bucket, key = parse_uri(backup_uri)
    directory = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    target = directory + filename
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        make_client(settings).put_object(Bucket=bucket, Key=target, Body=body, **settings.put_args())
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, "writing", bucket, target) from None
    return f"s3://{bucket}/{target}"
