-- Rollback for 004_create_read_models.sql
-- WARNING: this deletes the read models. They are rebuilt by replaying the event
-- store, but the application serves stale or empty views until the replay is done.

-- Give up rather than queue behind a long query (and block everyone queued behind us).
SET LOCAL lock_timeout = '5s';

DROP FUNCTION IF EXISTS clear_tenant_offsets(UUID, TEXT);
DROP FUNCTION IF EXISTS clear_tenant_read_models(UUID);
DROP TABLE IF EXISTS inventory_stock;
DROP TABLE IF EXISTS projection_offsets;
