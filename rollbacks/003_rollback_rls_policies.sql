-- Rollback for 003_create_rls_policies.sql
-- Removes the append-only protection and FORCE ROW LEVEL SECURITY; the tenant
-- isolation policies of 001 and 002 stay. No data is deleted.

-- Give up rather than queue behind a long query (and block everyone queued behind us).
SET LOCAL lock_timeout = '5s';

DROP TRIGGER IF EXISTS events_append_only ON events;
DROP FUNCTION IF EXISTS events_reject_mutation();
DROP POLICY IF EXISTS events_append_only_no_delete ON events;
DROP POLICY IF EXISTS events_append_only_no_update ON events;
ALTER TABLE IF EXISTS snapshots NO FORCE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS events NO FORCE ROW LEVEL SECURITY;
