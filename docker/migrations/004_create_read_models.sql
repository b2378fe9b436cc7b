-- Migration: create read models
-- Created: 2026-11-24
--
-- Read models rebuilt from the event store: projection_offsets remembers how far
-- each projection has read per tenant; inventory_stock is the stock level per
-- product and warehouse. clear_tenant_read_models() and clear_tenant_offsets()
-- reset them so a projection can be replayed. Idempotent: safe to run again.

CREATE TABLE IF NOT EXISTS projection_offsets (
    tenant_id UUID NOT NULL,
    projection_name TEXT NOT NULL,
    last_sequence BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (tenant_id, projection_name)
);

ALTER TABLE projection_offsets ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema()
          AND tablename = 'projection_offsets'
          AND policyname = 'projection_offsets_tenant_isolation'
    ) THEN
        CREATE POLICY projection_offsets_tenant_isolation ON projection_offsets
            USING (tenant_id = current_tenant_id())
            WITH CHECK (tenant_id = current_tenant_id());
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS inventory_stock (
    tenant_id UUID NOT NULL,
    product_id UUID NOT NULL,
    warehouse_id UUID NOT NULL,
    quantity BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (tenant_id, product_id, warehouse_id),
    CONSTRAINT inventory_stock_reserved_within_quantity CHECK (reserved >= 0 AND reserved <= quantity)
);

CREATE INDEX IF NOT EXISTS idx_inventory_stock_tenant_warehouse
    ON inventory_stock (tenant_id, warehouse_id);

ALTER TABLE inventory_stock ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema()
          AND tablename = 'inventory_stock'
          AND policyname = 'inventory_stock_tenant_isolation'
    ) THEN
        CREATE POLICY inventory_stock_tenant_isolation ON inventory_stock
            USING (tenant_id = current_tenant_id())
            WITH CHECK (tenant_id = current_tenant_id());
    END IF;
END
$$;

-- Forget every read model row of one tenant (before replaying all its projections).
CREATE OR REPLACE FUNCTION clear_tenant_read_models(p_tenant_id UUID)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM inventory_stock WHERE tenant_id = p_tenant_id;
    DELETE FROM projection_offsets WHERE tenant_id = p_tenant_id;
END;
$$;

-- Rewind one projection of one tenant to the start of the event stream.
CREATE OR REPLACE FUNCTION clear_tenant_offsets(p_tenant_id UUID, p_projection_name TEXT)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM projection_offsets
    WHERE tenant_id = p_tenant_id
      AND projection_name = p_projection_name;
END;
$$;
