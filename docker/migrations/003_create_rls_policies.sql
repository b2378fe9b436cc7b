-- Migration: create rls policies
-- Created: 2026-11-24
--
-- Hardens tenancy and makes the event store append-only:
-- * FORCE ROW LEVEL SECURITY, so the tables' owner (the application role) is
--   subject to the tenant policies too;
-- * restrictive policies that refuse every UPDATE and DELETE on events;
-- * a trigger that rejects UPDATE, DELETE and TRUNCATE on events even for roles
--   that bypass row-level security.
-- Idempotent: policies and the trigger are created only when absent.

-- Give up rather than queue behind a long query (and block everyone queued behind us).
SET LOCAL lock_timeout = '5s';

ALTER TABLE events FORCE ROW LEVEL SECURITY;
ALTER TABLE snapshots FORCE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema()
          AND tablename = 'events'
          AND policyname = 'events_append_only_no_update'
    ) THEN
        CREATE POLICY events_append_only_no_update ON events
            AS RESTRICTIVE FOR UPDATE
            USING (false);
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = current_schema()
          AND tablename = 'events'
          AND policyname = 'events_append_only_no_delete'
    ) THEN
        CREATE POLICY events_append_only_no_delete ON events
            AS RESTRICTIVE FOR DELETE
            USING (false);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION events_reject_mutation()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'append a compensating event instead';
END;
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'events_append_only'
          AND tgrelid = 'events'::regclass
    ) THEN
        CREATE TRIGGER events_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON events
            FOR EACH STATEMENT
            EXECUTE FUNCTION events_reject_mutation();
    END IF;
END
$$;
