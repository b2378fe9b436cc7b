"""The restore-mode rehearsal streams the backup into pg_restore and checks its checksum after
(``restore_backup(..., verify_before_commit=False)``): real PostgreSQL, moto's S3 server.

The damage is done in moto's own storage after the backup was written and verified (one byte
flipped in the stored object, its recorded ETag and metadata left as they were), so that only
the restore's hash over the whole object can find it.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.deploy.test_pipeline import _scratch_databases

ITEMS_ROWS = 2_000
AUDIT_ROWS = 40_000  # a table nothing touches: its data is left out of the restore, so the object is streamed


def _seed(project) -> None:
    project.apply_directly(project.prod_url, [1])
    with psycopg.connect(project.prod_url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, {ITEMS_ROWS}) g")
        conn.execute("CREATE TABLE audit (id BIGINT PRIMARY KEY, payload TEXT)")
        conn.execute(f"INSERT INTO audit SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, {AUDIT_ROWS}) g")


@pytest.fixture
def damaged_in_storage(monkeypatch):
    """Flip one byte of the stored .dump, at ``fraction`` of its length, the first time it is read.

    The backup (multipart upload, verified by its ETag) does not read the object back, so its
    first read is the rehearsal's: the byte is flipped after the backup, before the rehearsal.
    moto caches the ETag, so the object still looks as recorded to a HEAD.
    """
    from moto.s3.models import S3Backend

    flipped: list[int] = []
    original = S3Backend.get_object

    def get_object(self, bucket_name, key_name, *args, **kwargs):
        key = original(self, bucket_name, key_name, *args, **kwargs)
        if key is not None and key_name.endswith(".dump") and not flipped and hasattr(key, "_value_buffer"):
            size = key.size
            at = int(size * fraction[0])
            buffer = key._value_buffer
            buffer.seek(at)
            byte = buffer.read(1)
            buffer.seek(at)
            buffer.write(bytes([byte[0] ^ 0xFF]))
            flipped.append(at)
        return key

    fraction = [0.5]
    monkeypatch.setattr(S3Backend, "get_object", get_object)
    return fraction, flipped


@pytest.mark.parametrize(("fraction", "data"), [(0.5, "touched"), (0.95, "touched"), (0.5, "all")])
def test_a_byte_flipped_in_storage_after_the_backup_fails_the_rehearsal_and_leaves_prod_and_staging_clean(
    project, damaged_in_storage, fraction, data
):
    """touched: streamed, checked after; all: gate 3 skipped its block read, the one-transaction restore refuses."""
    _seed(project)
    project.write_config(rehearsal_data=f'"{data}"')
    where, flipped = damaged_in_storage
    where[0] = fraction
    before = project.versions(project.prod_url)

    result = project.deploy()

    assert flipped, "the stored object was never read"
    assert result.exit_code == 1, result.output
    assert "Staging rehearsal: FAILED" in result.stdout
    assert "does not match its recorded checksum" in result.stderr
    if data == "touched":
        assert "before the checksum was known" in result.stderr  # the streamed path, not the spooled one
    else:
        assert "nothing was restored" in result.stderr
    assert "prod is untouched" in result.stderr
    assert "[5/6] Production apply: not run: staging failed" in result.stdout
    assert project.versions(project.prod_url) == before
    assert project.columns(project.prod_url, "items") == ["id", "name"]
    assert _scratch_databases(project) == []
    (record,) = project.records()
    assert record["failed_gate"] == "staging"
    assert "checksum" in record["error"]
    assert record["rehearsal"]["applied"] == []  # no migration ran on the damaged restore


def test_the_rehearsal_streams_a_selective_restore_and_records_how(project):
    _seed(project)

    result = project.deploy()

    assert result.exit_code == 0, result.output
    (record,) = project.records()
    ran_on = record["rehearsal"]["ran_on"]
    assert ran_on["restore_mode"] == "stream-verify-after"
    assert ran_on["scope"]["data"] == "touched" and "public.audit" not in ran_on["scope"]["relations"]
    assert ran_on["row_counts"] == {"public.items": ITEMS_ROWS}
    assert _scratch_databases(project) == []
    assert record["backup"]["verified_by"].startswith("every block read and inflated in-stream")  # gate 3 read it


def test_with_all_data_the_backup_leaves_the_block_read_to_the_rehearsals_restore_and_says_so(project):
    _seed(project)
    project.write_config(rehearsal_data='"all"')

    result = project.deploy()

    assert result.exit_code == 0, result.output
    (record,) = project.records()
    verified_by = record["backup"]["verified_by"]
    assert "in-stream" not in verified_by  # gate 3 skipped its own read of every block ...
    assert verified_by.endswith("pg_restore read every block restoring all of it (gate 4)")  # ... gate 4 did it
    assert record["rehearsal"]["ran_on"]["row_counts"] == {"public.items": ITEMS_ROWS}
    assert record["rehearsal"]["ran_on"]["restore_mode"] == "stream"  # everything: one transaction, verified first
