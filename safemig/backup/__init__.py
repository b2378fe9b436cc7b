"""Backups: ``pg_dump`` streamed into S3, verified, listed, restored.

The public API (what ``safemig backup``/``backups``/``restore`` and the deploy pipeline
call). Nothing here imports boto3 or psycopg at import time.
"""

from __future__ import annotations

from safemig.backup.restore import RestoreResult, restore_backup, restore_command
from safemig.backup.run import BackupResult, run_backup
from safemig.backup.settings import BackupSettings, load_settings
from safemig.backup.store import BackupInfo, OpenUpload, list_backups, put_next_to
from safemig.backup.store import list_backup_uploads as list_open_uploads

__all__ = [
    "BackupInfo",
    "BackupResult",
    "BackupSettings",
    "RestoreResult",
    "OpenUpload",
    "list_backups",
    "list_open_uploads",
    "load_settings",
    "put_next_to",
    "restore_backup",
    "restore_command",
    "run_backup",
]
