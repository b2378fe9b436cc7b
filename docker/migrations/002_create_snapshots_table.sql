-- Migration: create snapshots table
-- Created: 2026-11-24
--
-- Aggregate snapshots, so loading an aggregate replays only the events after its
-- latest snapshot. One row per (tenant, aggregate, sequence); tenant-isolated by
-- row-level security like events. Idempotent: safe to run again.

CREATE TABLE IF NOT EXISTS snapshots (
    id UUID NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    tenant_id UUID NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id UUID NOT NULL,
    sequence BIGINT NOT NULL,
    state JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT snapshots_tenant_aggregate_sequence_key UNIQUE (tenant_id, aggregate_id, sequence),
    CONSTRAINT snapshots_sequence_positive CHECK (sequence > 0)
);

CREATE INDEX IF NOT EXISTS idx_snapshots_tenant_aggregate_type
    ON snapshots (tenant_id, aggregate_type);

ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema()
          AND tablename = 'snapshots'
          AND policyname = 'snapshots_tenant_isolation'
    ) THEN
        CREATE POLICY snapshots_tenant_isolation ON snapshots
            USING (tenant_id = current_tenant_id())
            WITH CHECK (tenant_id = current_tenant_id());
    END IF;
END
$$;
