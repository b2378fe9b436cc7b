-- Rollback for 001_create_events_table.sql
-- WARNING: this deletes every event. Take a backup first (safemig deploy does).
-- Run after the rollbacks of 004, 003 and 002 (newest first).

-- Give up rather than queue behind a long query (and block everyone queued behind us).
SET LOCAL lock_timeout = '5s';

DROP POLICY IF EXISTS events_tenant_isolation ON events;
DROP TABLE IF EXISTS events;
DROP FUNCTION IF EXISTS current_tenant_id();
