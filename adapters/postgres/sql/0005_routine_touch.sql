-- leasehold store: routine touches commit without waiting for the WAL flush (migration 5).
-- Needs migrations 2 and 4.
--
-- The contract classes a compare-and-swap that changes only last_seen_at, expires_at and the
-- version as routine (leasehold::store::WriteClass::Routine): losing one to a crash is
-- harmless. Migration 2 committed every swap synchronously, so each touch waited for a WAL
-- flush, the same wait as a logout. This restates compare_and_swap with one change: such a
-- swap sets synchronous_commit off for its own transaction. Every other write, and every
-- other swap, still commits synchronously. Same conventions as 0001_schema.sql ("leasehold"
-- is the schema placeholder).

-- compare_and_swap: OK | NOT_FOUND | CONFLICT | INVALID_IDENTITY | INVALID_VERSION |
-- INVALID_DEADLINE, in the order of leasehold::store::check_swap, judged after the row lock.
CREATE OR REPLACE FUNCTION "leasehold".compare_and_swap(
    p_id              bytea,
    p_subject         text,
    p_resource        text,
    p_kind            text,
    p_state           smallint,
    p_reason          smallint,
    p_revoked_at      bigint,
    p_version         bigint,
    p_created_at      bigint,
    p_last_seen_at    bigint,
    p_absolute        bigint,
    p_expires_at      bigint,
    p_generation      bigint,
    p_verifier        bytea,
    p_rotated_at      bigint,
    p_prev_verifier   bytea,
    p_prev_sealed     bytea,
    p_prev_seen       boolean,
    p_retired         bytea[],
    p_access_verifier bytea,
    p_access_expires  bigint,
    p_binding         bytea,
    p_summary         text,
    p_data            bytea,
    p_data_version    bigint,
    p_expected        bigint,
    p_now             bigint,
    p_offset_ms       bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    cur  "leasehold".sessions;
    v_at bigint;
BEGIN
    SELECT * INTO cur FROM "leasehold".sessions AS s WHERE s.id = p_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 'NOT_FOUND';
    END IF;
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- after the row lock
    IF cur.state <> 0 THEN
        RETURN 'NOT_FOUND';          -- a tombstone is final, whatever the version
    END IF;
    IF cur.version <> p_expected THEN
        RETURN 'CONFLICT';
    END IF;
    IF v_at >= least(cur.expires_at, cur.absolute_deadline) AND p_state <> 1 THEN
        RETURN 'NOT_FOUND';          -- due: only its tombstone may be written
    END IF;
    IF p_subject IS DISTINCT FROM cur.subject
       OR p_resource IS DISTINCT FROM cur.resource
       OR p_kind IS DISTINCT FROM cur.kind
       OR p_created_at IS DISTINCT FROM cur.created_at
       OR p_absolute IS DISTINCT FROM cur.absolute_deadline THEN
        RETURN 'INVALID_IDENTITY';
    END IF;
    IF p_version <= cur.version THEN
        RETURN 'INVALID_VERSION';
    END IF;
    IF p_expires_at > p_absolute THEN
        RETURN 'INVALID_DEADLINE';
    END IF;
    -- A pure touch (only last_seen_at, expires_at and the version move: WriteClass::Routine)
    -- commits without waiting for its WAL flush. Losing one to a crash only ends the session
    -- sooner, and the WAL is one sequence: a later security commit flushes it too.
    IF p_state = 0
       AND (p_reason, p_revoked_at, p_generation, p_verifier, p_rotated_at, p_prev_verifier,
            p_prev_sealed, p_prev_seen, p_retired, p_access_verifier, p_access_expires,
            p_binding, p_summary, p_data, p_data_version)
           IS NOT DISTINCT FROM
           (cur.reason, cur.revoked_at, cur.generation, cur.verifier, cur.rotated_at,
            cur.prev_verifier, cur.prev_sealed, cur.prev_successor_seen, cur.retired,
            cur.access_verifier, cur.access_expires_at, cur.binding, cur.context_summary,
            cur.data, cur.data_version) THEN
        -- Transaction-local; the function's own SET clause does not name it, so it holds
        -- until the commit.
        PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);
    END IF;
    UPDATE "leasehold".sessions AS s SET
        state = p_state, reason = p_reason, revoked_at = p_revoked_at, version = p_version,
        last_seen_at = p_last_seen_at, expires_at = p_expires_at, generation = p_generation,
        verifier = p_verifier, rotated_at = p_rotated_at, prev_verifier = p_prev_verifier,
        prev_sealed = p_prev_sealed, prev_successor_seen = p_prev_seen, retired = p_retired,
        access_verifier = p_access_verifier, access_expires_at = p_access_expires,
        binding = p_binding, context_summary = p_summary, data = p_data,
        data_version = p_data_version
    WHERE s.id = p_id;
    RETURN 'OK';
END
$fn$;
