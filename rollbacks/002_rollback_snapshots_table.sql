-- Rollback for 002_create_snapshots_table.sql
-- WARNING: this deletes every snapshot (they can be rebuilt from the events).

-- Give up rather than queue behind a long query (and block everyone queued behind us).
SET LOCAL lock_timeout = '5s';

DROP POLICY IF EXISTS snapshots_tenant_isolation ON snapshots;
DROP TABLE IF EXISTS snapshots;
