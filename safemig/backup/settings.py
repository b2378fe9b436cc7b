"""The ``[backup]`` section of the config, validated once into typed settings.

Every mistake is reported here, before pg_dump starts or a byte goes to S3, as a
:class:`ConfigError` naming the key. Credentials are never read from the config: boto3's
standard chain (environment, profile, instance role) supplies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from safemig.config import Config, interpolate
from safemig.errors import ConfigError

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB  # S3 (and moto) refuse smaller parts, though only at completion
S3_MAX_PART = 5 * 1024 * MiB
S3_MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
DEFAULT_CONCURRENCY = 4
# gzip level 1: measured 2.4-2.6x faster than pg_dump's default (6) for 3-8% more bytes
# (bench/backup_bench.py); pg_dump's own speed is what bounds a backup.
DEFAULT_COMPRESSION = "1"
_ARCHIVE_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}  # readable only after a RestoreObject request
_SSE_VALUES = {"AES256", "aws:kms", "aws:kms:dsse", "none"}
_COMPRESSION = re.compile(r"^(?:[0-9]|(?:gzip|lz4|zstd|none)(?::[0-9]{1,2})?)$")
_KNOWN_KEYS = {
    "bucket",
    "prefix",
    "storage_class",
    "sse",
    "kms_key_id",
    "endpoint_url",
    "region",
    "compression",
    "part_size_mb",
    "concurrency",
    "pg_bin_dir",
    "sdk_checksums",
    "stall_timeout",
    "lock_wait_timeout",
    "keep_last",
    "keep_days",
    "spool_dir",
    "role_passwords",
}
DEFAULT_STALL_TIMEOUT = "5min"
DEFAULT_LOCK_WAIT_TIMEOUT = "30s"
_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|min|h)?\s*$")
_UNIT_SECONDS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class BackupSettings:
    """Where backups go and how they are made."""

    bucket: str
    prefix: str = ""
    storage_class: str | None = None
    sse: str | None = "AES256"
    kms_key_id: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    compression: str = DEFAULT_COMPRESSION
    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    pg_bin_dir: str | None = None
    sdk_checksums: bool = False  # botocore's own CRC32 checksums: off, since older S3-compatible stores refuse them
    stall_timeout: float = 300.0  # seconds without progress on the dump or the upload before giving up
    lock_wait_timeout: float = 30.0  # pg_dump --lock-wait-timeout: never queue long behind DDL
    keep_last: int | None = None  # retention for `safemig backups prune`
    keep_days: float | None = None
    spool_dir: str | None = None  # where a restore keeps its verified local copy (default: TMPDIR)
    role_passwords: bool = False  # store role passwords (hashes) with the roles: off unless asked

    @property
    def compression_method(self) -> str:
        """``gzip``, ``lz4``, ``zstd`` or ``none`` (a bare level means gzip, or none for 0)."""
        head = self.compression.split(":", 1)[0]
        if head.isdigit():
            return "none" if head == "0" else "gzip"
        return head

    def needs_pg_dump_16(self) -> bool:
        """pg_dump 15 and older take only ``-Z 0-9``; ``METHOD[:LEVEL]`` arrived in 16."""
        return not self.compression.isdigit()

    def env_prefix(self, env: str) -> str:
        """The S3 "directory" of one env's backups: ``prefix + env + "/"``."""
        return f"{self.prefix}{env}/"

    def put_args(self) -> dict[str, str]:
        """Encryption and storage-class arguments for every object safemig writes."""
        args: dict[str, str] = {}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args


def _string(section: dict[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = section.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"backup.{key} in {where} must be a string, not {value!r}", hint=f'e.g. {key} = "..."')
    return interpolate(value, f"backup.{key} in {where}")


def _int(section: dict[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"backup.{key} in {where} must be an integer from {low} to {high}, not {value!r}",
            hint=f"e.g. {key} = {default}",
        )
    return value


def _bool(section: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(
            f"backup.{key} in {where} must be true or false, not {value!r}",
            hint=f"e.g. {key} = {str(not default).lower()}",
        )
    return value


def _duration(section: dict[str, Any], key: str, where: str, default: str) -> float:
    """Seconds in ``"30s"``, ``"5min"``, ``"500ms"``, ``"1h"`` (a bare number is seconds).

    Written here rather than shared with the deploy settings' parser: backup sits below deploy
    and must not import it; the config helper is unifying the two.
    """
    value = section.get(key, default)
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    match = _DURATION.match(text) if isinstance(text, str) else None
    seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"] or "s"] if match else 0.0
    if not match or seconds <= 0:
        raise ConfigError(
            f"backup.{key} = {value!r} in {where} is not a positive duration",
            hint=f'write {key} like "30s", "5min" or "1h" (default {default})',
        )
    return seconds


def _optional_int(section: dict[str, Any], key: str, where: str, low: int, high: int) -> int | None:
    if key not in section:
        return None
    return _int(section, key, where, low, low, high)


def load_settings(config: Config) -> BackupSettings:
    """Validate ``[backup]``; a missing bucket or a bad value is a :class:`ConfigError` (exit 2)."""
    section = config.section("backup")
    where = config.source
    unknown = sorted(set(section) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key backup.{unknown[0]} in {where}", hint="known keys: " + ", ".join(sorted(_KNOWN_KEYS))
        )
    bucket = _string(section, "bucket", where)
    if not bucket:
        raise ConfigError(
            f"backup.bucket is not set in {where}",
            hint='add [backup] with bucket = "my-db-backups" (and prefix = "myapp/")',
        )
    prefix = _string(section, "prefix", where, "") or ""
    if prefix.startswith("/"):
        raise ConfigError(
            f"backup.prefix {prefix!r} in {where} must not start with '/'", hint='write prefix = "myapp/"'
        )
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    sse = _string(section, "sse", where, "AES256")
    if sse not in _SSE_VALUES:
        raise ConfigError(
            f"backup.sse = {sse!r} in {where} is not one of {', '.join(sorted(_SSE_VALUES))}",
            hint='use "AES256" (default) or "aws:kms" with kms_key_id',
        )
    kms_key_id = _string(section, "kms_key_id", where)
    if kms_key_id and not (sse or "").startswith("aws:kms"):
        raise ConfigError(
            f'backup.kms_key_id in {where} needs sse = "aws:kms"', hint='set sse = "aws:kms" or remove kms_key_id'
        )
    compression = section.get("compression", DEFAULT_COMPRESSION)
    compression = str(compression) if not isinstance(compression, bool) else compression
    if not isinstance(compression, str) or not _COMPRESSION.match(compression):
        raise ConfigError(
            f"backup.compression = {section.get('compression')!r} in {where} is not a pg_dump -Z value",
            hint='use 0-9 (gzip level; 1 is fast, 6 is pg_dump\'s default) or, with pg_dump 16+, "zstd:3" / "lz4"',
        )
    storage_class = _string(section, "storage_class", where)
    if storage_class and storage_class.upper() in _ARCHIVE_CLASSES:
        raise ConfigError(
            f"backup.storage_class = {storage_class!r} in {where}: such objects cannot be read back without a"
            " restore request, so a backup could neither be verified nor restored",
            hint='use "GLACIER_IR" (instant retrieval) or "STANDARD_IA", and move old backups to GLACIER with a'
            " bucket lifecycle rule",
        )
    part_mb = _int(section, "part_size_mb", where, DEFAULT_PART_SIZE // MiB, S3_MIN_PART // MiB, S3_MAX_PART // MiB)
    return BackupSettings(
        bucket=bucket,
        prefix=prefix,
        storage_class=storage_class,
        sse=None if sse == "none" else sse,
        kms_key_id=kms_key_id,
        endpoint_url=_string(section, "endpoint_url", where),
        region=_string(section, "region", where),
        compression=compression,
        part_size=part_mb * MiB,
        concurrency=_int(section, "concurrency", where, DEFAULT_CONCURRENCY, 1, 32),
        pg_bin_dir=_string(section, "pg_bin_dir", where),
        sdk_checksums=_bool(section, "sdk_checksums", where, False),
        stall_timeout=_duration(section, "stall_timeout", where, DEFAULT_STALL_TIMEOUT),
        lock_wait_timeout=_duration(section, "lock_wait_timeout", where, DEFAULT_LOCK_WAIT_TIMEOUT),
        keep_last=_optional_int(section, "keep_last", where, 1, 100_000),
        keep_days=_optional_int(section, "keep_days", where, 1, 100_000),
        spool_dir=_string(section, "spool_dir", where),
        role_passwords=_bool(section, "role_passwords", where, False),
    )


def choose_part_size(configured: int, expected_bytes: int) -> int:
    """A part size fixed up front (some S3-compatible stores want equal parts) that fits the dump.

    ``expected_bytes`` is a generous upper estimate of the dump (twice the database's size
    on disk: an uncompressed dump of bytea/hex data can exceed the table files); parts
    grow in whole MiB so 10,000 of them hold it.
    """
    needed = -(-expected_bytes // (S3_MAX_PARTS - 100))
    needed = -(-needed // MiB) * MiB
    return min(S3_MAX_PART, max(configured, needed))
