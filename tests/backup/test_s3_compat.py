"""What safemig's S3 requests carry on the wire: nothing an older S3-compatible store rejects.

botocore >= 1.36 adds CRC32 "flexible checksums" to uploads by default (``x-amz-checksum-*``
and ``x-amz-sdk-checksum-algorithm`` headers, ``aws-chunked`` bodies with trailers); older
MinIO, Ceph RGW and others refuse them. safemig hashes the dump itself and reads it back,
so its client only sends them when asked to (``backup.sdk_checksums = true``).
"""

from __future__ import annotations

import pytest

import safemig.backup.run as run_module
import safemig.backup.store as store_module
from safemig.backup import run_backup
from safemig.backup.settings import load_settings
from safemig.backup.store import make_client, put_next_to
from safemig.config import load_config
from safemig.errors import ConfigError
from tests.backup.conftest import write_config


def _checksum_traits(request_headers) -> list[str]:
    headers = {name.lower(): value.decode() if isinstance(value, bytes) else str(value) for name, value in request_headers.items()}
    found = [f"{name}: {value}" for name, value in headers.items() if name.startswith(("x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "x-amz-trailer"))]
    if "aws-chunked" in headers.get("content-encoding", "").lower():
        found.append(f"content-encoding: {headers['content-encoding']}")
    if "STREAMING-" in headers.get("x-amz-content-sha256", ""):
        found.append(f"x-amz-content-sha256: {headers['x-amz-content-sha256']}")
    return found


def _record_requests(monkeypatch) -> list[tuple[str, list[str]]]:
    """Every request the clients safemig builds send: (operation event, checksum headers found)."""
    sent: list[tuple[str, list[str]]] = []
    real_make_client = store_module.make_client

    def recording_client(settings):
        client = real_make_client(settings)

        def record(request, event_name, **_):
            sent.append((event_name, _checksum_traits(request.headers)))

        # first: moto answers in a before-send handler of its own, and the first answer wins
        client.meta.events.register_first("before-send.s3", record)
        return client

    monkeypatch.setattr(store_module, "make_client", recording_client)
    monkeypatch.setattr(run_module, "make_client", recording_client)
    return sent


def test_backup_upload_sends_no_sdk_checksum_headers_or_aws_chunked_bodies(project, config, database_url, s3, bucket_name, monkeypatch):
    sent = _record_requests(monkeypatch)
    result = run_backup(config, "prod", database_url=database_url)
    put_next_to(result.uri, "deploy-record.json", b'{"status": "deployed"}', config=config)

    operations = {event.rsplit(".", 1)[-1] for event, _ in sent}
    assert {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject"} <= operations
    assert "GetObject" not in operations  # the ETag proved the object: its TOC was read from the stream
    assert [(event, found) for event, found in sent if found] == []
    assert s3.get_object(Bucket=bucket_name, Key=result.key)["ContentLength"] == result.size


def test_sdk_checksums_setting_gives_botocore_its_defaults_back(project, bucket_name, s3, monkeypatch):
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION", raising=False)
    monkeypatch.delenv("AWS_RESPONSE_CHECKSUM_VALIDATION", raising=False)
    write_config(project, bucket_name, sdk_checksums=True)
    settings = load_settings(load_config(project / "safemig.toml"))
    assert settings.sdk_checksums is True
    assert make_client(settings).meta.config.request_checksum_calculation == "when_supported"  # botocore's default
    write_config(project, bucket_name)
    settings = load_settings(load_config(project / "safemig.toml"))
    assert settings.sdk_checksums is False
    boto_config = make_client(settings).meta.config
    assert (boto_config.request_checksum_calculation, boto_config.response_checksum_validation) == ("when_required", "when_required")
    assert (boto_config.retries["mode"], boto_config.connect_timeout, boto_config.max_pool_connections) == ("standard", 10, settings.concurrency + 4)


def test_sdk_checksums_must_be_a_boolean(project, bucket_name):
    write_config(project, bucket_name, sdk_checksums="yes")
    with pytest.raises(ConfigError) as caught:
        load_settings(load_config(project / "safemig.toml"))
    assert "backup.sdk_checksums" in caught.value.message and "\n" not in caught.value.message


def test_botocore_without_the_checksum_options_still_gets_a_client(project, config, monkeypatch):
    """botocore < 1.36 raises TypeError on Config options it does not know (and sends no such checksums)."""
    import botocore.config

    real_config = botocore.config.Config

    class OldConfig(real_config):
        def __init__(self, *args, **kwargs):
            unknown = {"request_checksum_calculation", "response_checksum_validation"} & set(kwargs)
            if unknown:
                raise TypeError(f"Got unexpected keyword argument '{sorted(unknown)[0]}'")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(botocore.config, "Config", OldConfig)
    client = make_client(load_settings(config))
    assert client.meta.config.max_pool_connections == load_settings(config).concurrency + 4
