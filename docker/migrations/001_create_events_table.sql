-- Migration: create events table
-- Created: 2026-11-24
--
-- The append-only event store of ForgeERP, and the tenant helper every row-level
-- security policy uses. The application sets the tenant per transaction:
--     SET LOCAL app.tenant_id = '<tenant uuid>';
-- current_tenant_id() reads it (NULL when unset, so an unset tenant sees no rows).
-- Idempotent: safe to run again.

CREATE OR REPLACE FUNCTION current_tenant_id()
RETURNS UUID
LANGUAGE sql
STABLE
AS $$
    SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid
$$;

CREATE TABLE IF NOT EXISTS events (
    id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    tenant_id UUID NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id UUID NOT NULL,
    sequence BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    payload JSONB NOT NULL DEFAULT '{}'::jsonb,
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT events_tenant_aggregate_sequence_key UNIQUE (tenant_id, aggregate_id, sequence),
    CONSTRAINT events_sequence_positive CHECK (sequence > 0)
);

CREATE INDEX IF NOT EXISTS idx_events_tenant_aggregate
    ON events (tenant_id, aggregate_type, aggregate_id);

CREATE INDEX IF NOT EXISTS idx_events_tenant_created_at
    ON events (tenant_id, created_at);

ALTER TABLE events ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema()
          AND tablename = 'events'
          AND policyname = 'events_tenant_isolation'
    ) THEN
        CREATE POLICY events_tenant_isolation ON events
            USING (tenant_id = current_tenant_id())
            WITH CHECK (tenant_id = current_tenant_id());
    END IF;
END
$$;
