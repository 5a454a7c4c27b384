-- leasehold store, contract v2: functions. PROTOTYPE for issue 12. Needs schema.sql first.
--
-- Same conventions as schema.sql: the token "leasehold" (double quotes included) is the schema
-- placeholder; run as one transaction; the advisory lock serializes concurrent runs (concurrent
-- CREATE OR REPLACE FUNCTION otherwise fails with "tuple concurrently updated").
--
-- Every function:
--   * is one round trip (one SELECT from the adapter) and one transaction (autocommit);
--   * judges at = greatest(p_now, server clock + p_offset_ms), the server clock being
--     clock_timestamp() read AFTER the function's last lock wait (never now(): the transaction
--     start, stale after a wait). p_offset_ms is a test hook (0 in production);
--   * qualifies every object and pins search_path (a caller's search_path cannot redirect it);
--   * bounds lock waits with lock_timeout (SQLSTATE 55P03 -> retryable, nothing committed).
--
-- Lock order (deadlock freedom): store_lock < subjects row < resources row < sessions rows in
-- id order. Every function takes a subset of these in that order; the reaper only uses
-- SKIP LOCKED (never waits). Group lock rows are taken EXCLUSIVELY (an upsert, which locks the
-- row even when its WHERE is false): a shared lock (FOR KEY SHARE / FOR SHARE) taken by a flood
-- of inserts starved a FOR UPDATE waiter here until the flood stopped; exclusive lockers queue
-- FIFO, so revoke_subject/revoke_resource finish in bounded time under a flood.
--
-- Outcomes are text codes; SQL errors the adapter maps: 23505 unique_violation ->
-- AlreadyExists (a racing insert of the same id, or a duplicate slot id), 55P03 lock timeout /
-- 40P01 deadlock / 40001 serialization -> retryable.

BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('leasehold store migration', 0));

-- The server clock in ms since the epoch, shifted by the test offset.
CREATE OR REPLACE FUNCTION "leasehold".clock_ms(p_offset_ms bigint)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + p_offset_ms
$fn$;

-- load_session: the record (NULL if absent) and the store time, in one statement. The clock is
-- read during execution, i.e. after the statement's snapshot: the time returned is never older
-- than the state read. The adapter may also send this SELECT itself.
-- Adapter: SELECT l.store_time, (l.rec).* FROM "leasehold".load_session($1, $2) AS l
CREATE OR REPLACE FUNCTION "leasehold".load_session(p_id bytea, p_offset_ms bigint DEFAULT 0)
RETURNS TABLE (store_time bigint, rec "leasehold".sessions)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT "leasehold".clock_ms(p_offset_ms), s
    FROM (SELECT 1) AS one
    LEFT JOIN "leasehold".sessions AS s ON s.id = p_id
$fn$;

-- insert_session: one atomic step. Outcomes: INSERTED (evicted = ids tombstoned with reason 5,
-- oldest first; also for an idempotent replay of a byte-identical record, then evicted = {}),
-- ALREADY_EXISTS, INVALID_WRITE, RATE_LIMITED (retry_after_ms), GLOBAL_CAP, SUBJECT_CAP.
-- Refusals write no session and no creation; due members found by a count keep the Expired
-- tombstone it wrote (as the reference store does).
-- Adapter: SELECT * FROM "leasehold".insert_session(ROW($1, ..., $23)::"leasehold".sessions,
--          $24, $25, $26, $27, $28, $29, $30)
CREATE OR REPLACE FUNCTION "leasehold".insert_session(
    p_rec            "leasehold".sessions,
    p_cap_max        integer,   -- NULL: no subject cap
    p_cap_evict      boolean,   -- true: evict_oldest, false: reject
    p_rate_max       integer,   -- NULL: no creation rate
    p_rate_window_ms bigint,
    p_global_cap     bigint,    -- NULL: no global cap
    p_now            bigint,
    p_offset_ms      bigint DEFAULT 0,
    OUT outcome        text,
    OUT retry_after_ms bigint,
    OUT evicted        bytea[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
DECLARE
    v_stored "leasehold".sessions;
    v_at_g   bigint;   -- judged once the group rows are locked: global-cap decisions
    v_at     bigint;   -- judged once every row is locked: everything else
    v_locked bytea[] := '{}';
    v_live   bytea[];
    v_count  bigint;
    v_kth    bigint;
    v_excess integer;
    c_slack  CONSTANT bigint := 86400000; -- lock rows outlive their sessions by a day
BEGIN
    evicted := '{}';
    IF p_rec.id IS NULL OR octet_length(p_rec.id) <> 18 OR p_rec.state IS DISTINCT FROM 0::smallint
       OR p_rec.subject IS NULL THEN
        outcome := 'INVALID_WRITE';
        RETURN;
    END IF;

    -- 1. The id is present: a replay of this very record (a retry after a lost reply) or a clash.
    SELECT * INTO v_stored FROM "leasehold".sessions AS s WHERE s.id = p_rec.id;
    IF FOUND THEN
        outcome := CASE WHEN v_stored IS NOT DISTINCT FROM p_rec THEN 'INSERTED' ELSE 'ALREADY_EXISTS' END;
        RETURN;
    END IF;

    -- 2. The id must carry its subject's shard tag: first 2 bytes of
    --    SHA-256("leasehold/v1/shard\0" || subject), as engine/src/ids.rs ShardTag::of.
    IF substring(p_rec.id FROM 1 FOR 2) IS DISTINCT FROM substring(
           sha256('\x6c65617365686f6c642f76312f736861726400'::bytea || convert_to(p_rec.subject, 'UTF8'))
           FROM 1 FOR 2) THEN
        outcome := 'INVALID_WRITE';
        RETURN;
    END IF;

    -- 3. Group locks, in the global order. The upsert locks the row whether it inserts it, updates
    --    it, or (WHERE false: the common case, no new tuple) neither.
    IF p_global_cap IS NOT NULL THEN
        PERFORM 1 FROM "leasehold".store_lock AS l WHERE l.singleton FOR UPDATE;
    END IF;
    INSERT INTO "leasehold".subjects AS s (subject, expires_at)
    VALUES (p_rec.subject, p_rec.absolute_deadline + c_slack)
    ON CONFLICT (subject) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE s.expires_at < p_rec.absolute_deadline;
    IF p_rec.resource IS NOT NULL THEN
        -- Exclusive, so that revoke_resource (same lock) sees this session or precedes it.
        INSERT INTO "leasehold".resources AS r (resource, expires_at)
        VALUES (p_rec.resource, p_rec.absolute_deadline + c_slack)
        ON CONFLICT (resource) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE r.expires_at < p_rec.absolute_deadline;
    END IF;

    -- 4. Session rows this step may write, locked in id order: the subject's non-tombstone
    --    members (only with a subject cap) and, with a global cap, the active sessions already
    --    due. Counting happens in LATER statements (fresh snapshots, after these locks).
    v_at_g := greatest(p_now, "leasehold".clock_ms(p_offset_ms));
    IF p_cap_max IS NOT NULL AND p_global_cap IS NOT NULL THEN
        v_locked := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                          WHERE s.state = 0 AND (s.subject = p_rec.subject OR s.expires_at <= v_at_g)
                          ORDER BY s.id FOR UPDATE);
    ELSIF p_cap_max IS NOT NULL THEN
        v_locked := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                          WHERE s.subject = p_rec.subject AND s.state = 0
                          ORDER BY s.id FOR UPDATE);
    ELSIF p_global_cap IS NOT NULL THEN
        v_locked := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                          WHERE s.state = 0 AND s.expires_at <= v_at_g
                          ORDER BY s.id FOR UPDATE);
    END IF;
    v_at := greatest(v_at_g, p_now, "leasehold".clock_ms(p_offset_ms));

    -- 5. Re-check the id under the subject lock (a replay racing its original waited above).
    SELECT * INTO v_stored FROM "leasehold".sessions AS s WHERE s.id = p_rec.id;
    IF FOUND THEN
        outcome := CASE WHEN v_stored IS NOT DISTINCT FROM p_rec THEN 'INSERTED' ELSE 'ALREADY_EXISTS' END;
        RETURN;
    END IF;

    -- 6. Creation rate: creations newer than at - window (entries logged at a later judged time
    --    count too: fail closed). Retry after the (count - max + 1)-th oldest leaves the window.
    IF p_rate_max IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM "leasehold".creations AS c
        WHERE c.subject = p_rec.subject AND c.created_at > v_at - p_rate_window_ms;
        IF v_count >= p_rate_max THEN
            SELECT c.created_at INTO v_kth FROM "leasehold".creations AS c
            WHERE c.subject = p_rec.subject AND c.created_at > v_at - p_rate_window_ms
            ORDER BY c.created_at, c.id
            OFFSET v_count - p_rate_max LIMIT 1;
            outcome := 'RATE_LIMITED';
            retry_after_ms := v_kth + p_rate_window_ms - v_at;
            RETURN;
        END IF;
    END IF;

    -- 7. Global cap (exact: every globally capped insert holds store_lock).
    IF p_global_cap IS NOT NULL THEN
        UPDATE "leasehold".sessions AS s
        SET state = 1, reason = 6, revoked_at = v_at_g, version = s.version + 1
        WHERE s.id = ANY (v_locked) AND s.state = 0 AND s.expires_at <= v_at_g;
        SELECT count(*) INTO v_count FROM "leasehold".sessions AS s
        WHERE s.state = 0 AND s.expires_at > v_at_g;
        IF v_count >= p_global_cap THEN
            outcome := 'GLOBAL_CAP';
            RETURN;
        END IF;
    END IF;

    -- 8. Subject cap: tombstone the members due at `at` (reason Expired), count the live ones.
    IF p_cap_max IS NOT NULL THEN
        UPDATE "leasehold".sessions AS s
        SET state = 1, reason = 6, revoked_at = v_at, version = s.version + 1
        WHERE s.id = ANY (v_locked) AND s.subject = p_rec.subject AND s.state = 0
          AND s.expires_at <= v_at;
        v_live := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                        WHERE s.id = ANY (v_locked) AND s.subject = p_rec.subject AND s.state = 0
                        ORDER BY s.created_at, s.id);
        v_excess := cardinality(v_live) + 1 - p_cap_max;
        IF v_excess > 0 THEN
            IF NOT coalesce(p_cap_evict, false) THEN
                outcome := 'SUBJECT_CAP';
                RETURN;
            END IF;
            evicted := v_live[1:v_excess];
            UPDATE "leasehold".sessions AS s
            SET state = 1, reason = 5, revoked_at = v_at, version = s.version + 1
            WHERE s.id = ANY (evicted);
        END IF;
    END IF;

    -- 9. Insert (a racing insert of the same id under another subject: 23505), log the creation.
    INSERT INTO "leasehold".sessions SELECT (p_rec).*;
    IF p_rate_max IS NOT NULL THEN
        INSERT INTO "leasehold".creations (subject, created_at, id, expires_at)
        VALUES (p_rec.subject, v_at, p_rec.id, v_at + p_rate_window_ms);
    END IF;
    outcome := 'INSERTED';
END
$fn$;

-- compare_and_swap: OK | NOT_FOUND | CONFLICT | INVALID_WRITE, in the order of
-- engine/src/store.rs check_swap, judged after the row lock.
-- Adapter: SELECT "leasehold".compare_and_swap(ROW($1, ..., $23)::"leasehold".sessions, $24, $25, $26)
CREATE OR REPLACE FUNCTION "leasehold".compare_and_swap(
    p_new              "leasehold".sessions,
    p_expected_version bigint,
    p_now              bigint,
    p_offset_ms        bigint DEFAULT 0)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
DECLARE
    cur  "leasehold".sessions;
    v_at bigint;
BEGIN
    SELECT * INTO cur FROM "leasehold".sessions AS s WHERE s.id = p_new.id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 'NOT_FOUND';
    END IF;
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- after the row lock
    IF cur.state <> 0 THEN
        RETURN 'NOT_FOUND';          -- a tombstone is final, whatever the version
    END IF;
    IF cur.version <> p_expected_version THEN
        RETURN 'CONFLICT';
    END IF;
    IF v_at >= least(cur.expires_at, cur.absolute_deadline) AND p_new.state IS DISTINCT FROM 1::smallint THEN
        RETURN 'NOT_FOUND';          -- due: only its tombstone may be written
    END IF;
    IF p_new.subject IS DISTINCT FROM cur.subject
       OR p_new.resource IS DISTINCT FROM cur.resource
       OR p_new.created_at IS DISTINCT FROM cur.created_at
       OR p_new.absolute_deadline IS DISTINCT FROM cur.absolute_deadline
       OR p_new.version IS NULL OR p_new.version <= cur.version
       OR p_new.expires_at IS NULL OR p_new.expires_at > p_new.absolute_deadline THEN
        RETURN 'INVALID_WRITE';
    END IF;
    UPDATE "leasehold".sessions AS s SET
        kind = p_new.kind, state = p_new.state, reason = p_new.reason,
        revoked_at = p_new.revoked_at, version = p_new.version,
        last_seen_at = p_new.last_seen_at, expires_at = p_new.expires_at,
        generation = p_new.generation, verifier = p_new.verifier, rotated_at = p_new.rotated_at,
        prev_verifier = p_new.prev_verifier, prev_sealed = p_new.prev_sealed,
        prev_successor_seen = p_new.prev_successor_seen, retired = p_new.retired,
        binding = p_new.binding, context_summary = p_new.context_summary,
        data = p_new.data, data_version = p_new.data_version
    WHERE s.id = p_new.id;
    RETURN 'OK';
END
$fn$;

-- revoke_subject: tombstone (reason 2) every non-tombstone session of the subject, expired or
-- not; returns how many were live at `at`. The subject lock orders it against inserts.
CREATE OR REPLACE FUNCTION "leasehold".revoke_subject(
    p_subject text, p_now bigint, p_offset_ms bigint DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
DECLARE
    v_ids  bytea[];
    v_at   bigint;
    v_live bigint;
BEGIN
    INSERT INTO "leasehold".subjects AS s (subject, expires_at)
    VALUES (p_subject, greatest(p_now, "leasehold".clock_ms(0)))
    ON CONFLICT (subject) DO UPDATE SET expires_at = s.expires_at WHERE false;
    v_ids := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                   WHERE s.subject = p_subject AND s.state = 0
                   ORDER BY s.id FOR UPDATE);
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms));
    WITH t AS (
        UPDATE "leasehold".sessions AS s
        SET state = 1, reason = 2, revoked_at = v_at, version = s.version + 1
        WHERE s.id = ANY (v_ids) AND s.state = 0
        RETURNING s.expires_at)
    SELECT count(*) FILTER (WHERE t.expires_at > v_at) INTO v_live FROM t;
    RETURN v_live;
END
$fn$;

-- revoke_resource: as revoke_subject for every session tagged with the resource (reason 3).
CREATE OR REPLACE FUNCTION "leasehold".revoke_resource(
    p_resource text, p_now bigint, p_offset_ms bigint DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
DECLARE
    v_ids  bytea[];
    v_at   bigint;
    v_live bigint;
BEGIN
    INSERT INTO "leasehold".resources AS r (resource, expires_at)
    VALUES (p_resource, greatest(p_now, "leasehold".clock_ms(0)))
    ON CONFLICT (resource) DO UPDATE SET expires_at = r.expires_at WHERE false;
    v_ids := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                   WHERE s.resource = p_resource AND s.state = 0
                   ORDER BY s.id FOR UPDATE);
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms));
    WITH t AS (
        UPDATE "leasehold".sessions AS s
        SET state = 1, reason = 3, revoked_at = v_at, version = s.version + 1
        WHERE s.id = ANY (v_ids) AND s.state = 0
        RETURNING s.expires_at)
    SELECT count(*) FILTER (WHERE t.expires_at > v_at) INTO v_live FROM t;
    RETURN v_live;
END
$fn$;

-- take_ticket: ONE DELETE ... RETURNING. TAKEN (with the ticket) | EXPIRED (deleted) | MISSING
-- (absent, or the verifier differs: then the ticket stays). RETURNING is computed after the
-- row is locked and deleted, so the clock it reads follows any wait. Of concurrent callers at
-- most one deletes the row; the others re-check it after the winner commits and find nothing.
-- Note: bytea = is not constant-time; it compares a verifier (a hash), not a secret.
CREATE OR REPLACE FUNCTION "leasehold".take_ticket(
    p_id bytea, p_verifier bytea, p_now bigint, p_offset_ms bigint DEFAULT 0)
RETURNS TABLE (outcome text, session_id bytea, created_at bigint, expires_at bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
    WITH taken AS (
        DELETE FROM "leasehold".tickets AS t
        WHERE t.id = p_id AND t.verifier = p_verifier
        RETURNING t.session_id, t.created_at, t.expires_at,
                  greatest(p_now, "leasehold".clock_ms(p_offset_ms)) AS judged_at)
    SELECT CASE WHEN taken.session_id IS NULL THEN 'MISSING'
                WHEN taken.judged_at < taken.expires_at THEN 'TAKEN'
                ELSE 'EXPIRED' END,
           taken.session_id, taken.created_at, taken.expires_at
    FROM (SELECT 1) AS one
    LEFT JOIN taken ON true
$fn$;

-- acquire_slot: ACQUIRED | SESSION_NOT_LIVE | SESSION_CAP | RESOURCE_CAP (23505 for a duplicate
-- slot id). A slot counts while unexpired at `at` AND its session is live. Locks: the resource
-- row (exclusive, only with a per-resource cap), then the session row (exclusive: serializes
-- acquisitions of one session, and a revocation of it, against this count).
CREATE OR REPLACE FUNCTION "leasehold".acquire_slot(
    p_id           bytea,
    p_session_id   bytea,
    p_resource     text,
    p_acquired_at  bigint,
    p_expires_at   bigint,
    p_per_session  integer,  -- NULL: no cap
    p_per_resource integer,  -- NULL: no cap
    p_now          bigint,
    p_offset_ms    bigint DEFAULT 0)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
DECLARE
    v_sess  "leasehold".sessions;
    v_found boolean;
    v_at    bigint;
    v_n     bigint;
BEGIN
    IF p_resource IS NOT NULL AND p_per_resource IS NOT NULL THEN
        INSERT INTO "leasehold".resources AS r (resource, expires_at)
        VALUES (p_resource, p_expires_at + 86400000)
        ON CONFLICT (resource) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE r.expires_at < p_expires_at;
    END IF;
    SELECT * INTO v_sess FROM "leasehold".sessions AS s WHERE s.id = p_session_id FOR NO KEY UPDATE;
    v_found := FOUND;
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- after the locks
    IF NOT v_found OR v_sess.state <> 0 OR v_at >= least(v_sess.expires_at, v_sess.absolute_deadline) THEN
        RETURN 'SESSION_NOT_LIVE';
    END IF;
    IF p_per_session IS NOT NULL THEN
        SELECT count(*) INTO v_n FROM "leasehold".slots AS sl
        WHERE sl.session_id = p_session_id AND sl.expires_at > v_at;
        IF v_n >= p_per_session THEN
            RETURN 'SESSION_CAP';
        END IF;
    END IF;
    IF p_resource IS NOT NULL AND p_per_resource IS NOT NULL THEN
        SELECT count(*) INTO v_n
        FROM "leasehold".slots AS sl
        JOIN "leasehold".sessions AS se ON se.id = sl.session_id
        WHERE sl.resource = p_resource AND sl.expires_at > v_at
          AND se.state = 0 AND se.expires_at > v_at;
        IF v_n >= p_per_resource THEN
            RETURN 'RESOURCE_CAP';
        END IF;
    END IF;
    INSERT INTO "leasehold".slots (id, session_id, resource, acquired_at, expires_at)
    VALUES (p_id, p_session_id, p_resource, p_acquired_at, p_expires_at);
    RETURN 'ACQUIRED';
END
$fn$;

-- reap: removes at most p_limit records (sessions of any state, tickets, slots) whose deadline
-- is <= at, walking the expiry indexes with FOR UPDATE SKIP LOCKED: two reapers never wait on
-- each other or on a writer, and the cost follows what is removed. Bookkeeping rows (creation
-- log, lock rows) are cleaned too, up to p_limit each, and not counted.
CREATE OR REPLACE FUNCTION "leasehold".reap(
    p_now bigint, p_limit integer, p_offset_ms bigint DEFAULT 0,
    OUT n_sessions bigint, OUT n_tickets bigint, OUT n_slots bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $fn$
DECLARE
    v_at   bigint := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- SKIP LOCKED: no wait precedes use
    v_left integer := greatest(p_limit, 0);
BEGIN
    WITH victims AS (
        SELECT s.id FROM "leasehold".sessions AS s
        WHERE s.expires_at <= v_at ORDER BY s.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM "leasehold".sessions AS s USING victims AS v WHERE s.id = v.id RETURNING 1)
    SELECT count(*) INTO n_sessions FROM gone;
    v_left := v_left - n_sessions;

    WITH victims AS (
        SELECT t.id FROM "leasehold".tickets AS t
        WHERE t.expires_at <= v_at ORDER BY t.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM "leasehold".tickets AS t USING victims AS v WHERE t.id = v.id RETURNING 1)
    SELECT count(*) INTO n_tickets FROM gone;
    v_left := v_left - n_tickets;

    WITH victims AS (
        SELECT sl.id FROM "leasehold".slots AS sl
        WHERE sl.expires_at <= v_at ORDER BY sl.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM "leasehold".slots AS sl USING victims AS v WHERE sl.id = v.id RETURNING 1)
    SELECT count(*) INTO n_slots FROM gone;

    WITH victims AS (
        SELECT c.subject, c.created_at, c.id FROM "leasehold".creations AS c
        WHERE c.expires_at <= v_at ORDER BY c.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
    DELETE FROM "leasehold".creations AS c USING victims AS v
    WHERE (c.subject, c.created_at, c.id) = (v.subject, v.created_at, v.id);

    WITH victims AS (
        SELECT su.subject FROM "leasehold".subjects AS su
        WHERE su.expires_at <= v_at ORDER BY su.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
    DELETE FROM "leasehold".subjects AS su USING victims AS v WHERE su.subject = v.subject;

    WITH victims AS (
        SELECT r.resource FROM "leasehold".resources AS r
        WHERE r.expires_at <= v_at ORDER BY r.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
    DELETE FROM "leasehold".resources AS r USING victims AS v WHERE r.resource = v.resource;
END
$fn$;

INSERT INTO "leasehold".schema_migrations (version, description)
VALUES (2, 'contract v2 functions') ON CONFLICT (version) DO NOTHING;

COMMIT;
