"""The whole real-migration corpus (3,947 files from 20 projects, recipe in ../shared/corpus/): no crash, and
``syntax-error`` on exactly the 11 files PostgreSQL's parser rejects.

The corpus is not in the repository (fetched code is never committed): set ``SAFEMIG_CORPUS`` to the
directory ``extract.sh`` wrote; without it these tests are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = os.environ.get("SAFEMIG_CORPUS")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CORPUS or not Path(CORPUS).is_dir(),
        reason="SAFEMIG_CORPUS is not set to the real-migration corpus (see ../shared/corpus/README.md)",
    ),
]

# The 11 files of the corpus that PostgreSQL's grammar rejects, as the corpus README counts them (synapse's
# SQLite-isms and placeholders, down scripts with a stray token, ...), judged with libpg_query.
REJECTED = {
    "element-hq+synapse/synapse/storage/schema/main/delta/12/v12.sql",
    "element-hq+synapse/synapse/storage/schema/main/delta/14/v14.sql",
    "element-hq+synapse/synapse/storage/schema/main/delta/16/users.sql",
    "element-hq+synapse/synapse/storage/schema/main/delta/54/account_validity_with_renewal.sql",
    "element-hq+synapse/synapse/storage/schema/main/delta/87/02_per_connection_state.sql",
    "element-hq+synapse/synapse/storage/schema/state/delta/89/01_state_groups_deletion.sql",
    "ente-io+ente/server/migrations/3_add_encypted_collection_name.down.sql",
    "ente-io+ente/server/migrations/44_trash_add_index.down.sql",
    "harness+harness/app/store/database/migrate/postgres/0029_create_index_job_job_group_id_down.sql",
    "hatchet-dev+hatchet/cmd/hatchet-migrate/migrate/migrations/20250519145912_v1_0_21.sql",
    "rust-lang+crates.io/migrations/20170318181441_downloads_need_no_id/down.sql",
}


def test_the_whole_corpus_lints_without_a_crash_and_finds_exactly_the_real_syntax_errors(tmp_path):
    corpus = Path(CORPUS).resolve()
    named = sorted(str(p) for p in corpus.rglob("*.sql.postgres"))  # named explicitly: linted whatever the suffix
    proc = subprocess.run(
        [sys.executable, "-m", "safemig.cli", "lint", "--no-cache", "--format", "json", str(corpus), *named],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # never 70 (a bug) nor 2
    findings = json.loads(proc.stdout)
    rejected = {Path(f["path"]).relative_to(corpus).as_posix() for f in findings if f["rule"] == "syntax-error"}
    assert rejected == REJECTED
    linted = {Path(f["path"]).relative_to(corpus).as_posix() for f in findings}
    assert any(p.endswith(".sql.postgres") for p in linted)
