-- Rollback for 002_create_snapshots_table.sql
-- WARNING: this deletes every snapshot (they can be rebuilt from the events).

DROP POLICY IF EXISTS snapshots_tenant_isolation ON snapshots;
DROP TABLE IF EXISTS snapshots;
