-- leasehold store, contract v3: functions (migration 2). Needs migration 1.
--
-- Same conventions as 0001_schema.sql: the token "leasehold" (double quotes included) is the
-- schema placeholder; the adapter runs this in one transaction under its migration lock.
--
-- Every function:
--   * is one round trip (one statement from the adapter) in one autocommitted transaction;
--   * judges at = greatest(p_now, server clock + p_offset_ms), the server clock being
--     clock_timestamp() read AFTER the function's last lock wait (never now(): the transaction
--     start, stale after a wait). p_offset_ms is a test hook (0 in production);
--   * qualifies every object and pins search_path (a caller's search_path cannot redirect it).
--
-- Lock order (deadlock freedom): store_lock < subjects row < resources row < session rows in
-- id order (one `SELECT ... ORDER BY id FOR UPDATE` statement). Every function takes a subset
-- of these in that order. Two places take rows out of that order and therefore never wait:
-- the reaper and an insert's choice of the store's oldest sessions under an evicting global
-- cap (both `FOR UPDATE SKIP LOCKED`). Group lock rows are taken EXCLUSIVELY (an upsert, which
-- locks the row even when its WHERE is false): a flood of shared lockers (FOR KEY SHARE) held
-- off a waiting FOR UPDATE for seconds in the prototype; exclusive lockers queue FIFO, so
-- revoke_subject and revoke_resource finish in bounded time under an insert flood.
--
-- Lock waits are bounded by the caller's lock_timeout (the adapter's connect() sets one on
-- its own pools); SQLSTATE 55P03 means nothing committed.
--
-- Outcomes are text codes; SQL errors the adapter maps: 23505 unique_violation ->
-- AlreadyExists (a racing insert of the same id, a duplicate slot or ticket id), 40P01 / 40001
-- -> retried (nothing committed), 55P03 / 57014 -> Timeout.

-- The server clock in ms since the epoch, shifted by the test offset.
CREATE OR REPLACE FUNCTION "leasehold".clock_ms(p_offset_ms bigint)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + p_offset_ms
$fn$;

-- Writes the tombstone (reason p_reason, at p_at) over every listed session that is not one
-- yet, as SessionRecord::tombstone does: next version, expires_at lowered to at most p_at +
-- 7 days (TOMBSTONE_RETENTION), everything else kept. The caller holds the rows' locks.
-- Returns how many were live at p_at.
CREATE OR REPLACE FUNCTION "leasehold".tombstone(p_ids bytea[], p_reason smallint, p_at bigint)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH t AS (
        UPDATE "leasehold".sessions AS s SET
            state = 1, reason = p_reason, revoked_at = p_at, version = s.version + 1,
            expires_at = least(s.expires_at, p_at + 604800000)
        WHERE s.id = ANY (p_ids) AND s.state = 0
        RETURNING s.expires_at)
    SELECT count(*) FILTER (WHERE t.expires_at > p_at) FROM t
$fn$;

-- insert_session (p_write = true) and check_limits (p_write = false: no lock, no write, the
-- record parameters but the subject are NULL). Outcomes: INSERTED (evicted = the subject's
-- oldest, then the store's oldest, each oldest first; also for a replay of the very same
-- record, every column equal, then evicted = {}), ALREADY_EXISTS, RATE_LIMITED (retry_after_ms), SUBJECT_CAP, GLOBAL_CAP.
-- In the contract's order: the creation rate, the subject cap (planning its evictions), the
-- global cap counting those evictions as gone. A refusal writes nothing. The adapter checks
-- the id's shard tag before calling.
CREATE OR REPLACE FUNCTION "leasehold".insert_session(
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
    p_cap_max         integer,   -- NULL: no subject cap
    p_cap_evict       boolean,
    p_rate_max        integer,   -- NULL: no creation rate
    p_rate_window_ms  bigint,
    p_global_max      bigint,    -- NULL: no global cap
    p_global_evict    boolean,
    p_now             bigint,
    p_offset_ms       bigint,
    p_write           boolean,
    OUT outcome        text,
    OUT retry_after_ms bigint,
    OUT evicted        bytea[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_stored  "leasehold".sessions;
    v_at      bigint;
    v_members bytea[] := '{}';
    v_live    bytea[];
    v_global  bytea[];
    v_count   bigint;
    v_kth     bigint;
    v_excess  bigint;
    c_slack   CONSTANT bigint := 86400000; -- lock rows outlive their sessions by a day
BEGIN
    evicted := '{}';
    IF p_write THEN
        -- 1. Group locks, in the global order. The upsert locks the row whether it inserts it,
        --    updates it, or (WHERE false: the common case, no new tuple) neither.
        IF p_global_max IS NOT NULL THEN
            PERFORM 1 FROM "leasehold".store_lock AS l WHERE l.singleton FOR UPDATE;
        END IF;
        INSERT INTO "leasehold".subjects AS s (subject, expires_at)
        VALUES (p_subject, p_absolute + c_slack)
        ON CONFLICT (subject) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE s.expires_at < p_absolute;
        IF p_resource IS NOT NULL THEN
            INSERT INTO "leasehold".resources AS r (resource, expires_at)
            VALUES (p_resource, p_absolute + c_slack)
            ON CONFLICT (resource) DO UPDATE SET expires_at = EXCLUDED.expires_at
                WHERE r.expires_at < p_absolute;
        END IF;
        -- 2. The subject's open members (a capped insert may tombstone them), in id order.
        IF p_cap_max IS NOT NULL THEN
            v_members := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                               WHERE s.subject = p_subject AND s.state = 0
                               ORDER BY s.id FOR UPDATE);
        END IF;
        -- 3. The id is taken: a replay of this very record (a retry after a lost reply) or a
        --    clash. Checked under the subject lock, so a replay racing its original waits.
        SELECT * INTO v_stored FROM "leasehold".sessions AS s WHERE s.id = p_id;
        IF FOUND THEN
            outcome := CASE WHEN (v_stored.subject, v_stored.resource, v_stored.kind,
                                  v_stored.state, v_stored.reason, v_stored.revoked_at,
                                  v_stored.version, v_stored.created_at, v_stored.last_seen_at,
                                  v_stored.absolute_deadline, v_stored.expires_at,
                                  v_stored.generation, v_stored.verifier, v_stored.rotated_at,
                                  v_stored.prev_verifier, v_stored.prev_sealed,
                                  v_stored.prev_successor_seen, v_stored.retired,
                                  v_stored.access_verifier, v_stored.access_expires_at,
                                  v_stored.binding, v_stored.context_summary, v_stored.data,
                                  v_stored.data_version)
                            IS NOT DISTINCT FROM
                                 (p_subject, p_resource, p_kind, p_state, p_reason, p_revoked_at,
                                  p_version, p_created_at, p_last_seen_at, p_absolute,
                                  p_expires_at, p_generation, p_verifier, p_rotated_at,
                                  p_prev_verifier, p_prev_sealed, p_prev_seen, p_retired,
                                  p_access_verifier, p_access_expires, p_binding, p_summary,
                                  p_data, p_data_version)
                            THEN 'INSERTED' ELSE 'ALREADY_EXISTS' END;
            RETURN;
        END IF;
    END IF;
    -- Every count below runs in a statement after the locks (READ COMMITTED: a fresh snapshot
    -- per statement), judged on the clock read after them.
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms));

    -- 4. Creation rate: creations in the window ending at `at` (entries logged at a later
    --    judged time count too: fail closed). Retry once the (count - max + 1)-th oldest
    --    leaves the window.
    IF p_rate_max IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM "leasehold".creations AS c
        WHERE c.subject = p_subject AND c.logged_at > v_at - p_rate_window_ms;
        IF v_count >= p_rate_max THEN
            SELECT c.logged_at INTO v_kth FROM "leasehold".creations AS c
            WHERE c.subject = p_subject AND c.logged_at > v_at - p_rate_window_ms
            ORDER BY c.logged_at, c.seq
            OFFSET v_count - p_rate_max LIMIT 1;
            outcome := 'RATE_LIMITED';
            retry_after_ms := v_kth + p_rate_window_ms - v_at;
            RETURN;
        END IF;
    END IF;

    -- 5. Subject cap: the live members in creation order; the oldest make room.
    IF p_cap_max IS NOT NULL THEN
        v_live := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                        WHERE s.subject = p_subject AND s.state = 0 AND s.expires_at > v_at
                        ORDER BY s.created_at, s.seq);
        v_excess := cardinality(v_live) + 1 - p_cap_max;
        IF v_excess > 0 THEN
            IF NOT coalesce(p_cap_evict, false) THEN
                outcome := 'SUBJECT_CAP';
                RETURN;
            END IF;
            evicted := v_live[1:v_excess];
        END IF;
    END IF;

    -- 6. Global cap (exact: every globally capped insert holds store_lock), counting the
    --    subject's planned evictions as gone. Evicting picks the store's oldest live sessions
    --    it can lock without waiting (a row another call holds is being written: skipping it
    --    keeps the lock order; too few → GLOBAL_CAP, fail closed).
    IF p_global_max IS NOT NULL THEN
        SELECT count(*) INTO v_count FROM "leasehold".sessions AS s
        WHERE s.state = 0 AND s.expires_at > v_at;
        v_excess := v_count - cardinality(evicted) + 1 - p_global_max;
        IF v_excess > 0 THEN
            IF NOT coalesce(p_global_evict, false) THEN
                outcome := 'GLOBAL_CAP';
                RETURN;
            END IF;
            IF p_write THEN
                v_global := ARRAY(SELECT o.id FROM (
                    SELECT s.id, s.created_at, s.seq FROM "leasehold".sessions AS s
                    WHERE s.state = 0 AND s.expires_at > v_at AND s.id <> ALL (evicted)
                    ORDER BY s.created_at, s.seq LIMIT v_excess
                    FOR UPDATE SKIP LOCKED) AS o
                    ORDER BY o.created_at, o.seq);
            ELSE
                v_global := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                    WHERE s.state = 0 AND s.expires_at > v_at AND s.id <> ALL (evicted)
                    ORDER BY s.created_at, s.seq LIMIT v_excess);
            END IF;
            IF cardinality(v_global) < v_excess THEN
                outcome := 'GLOBAL_CAP';
                RETURN;
            END IF;
            evicted := evicted || v_global;
        END IF;
    END IF;

    IF NOT p_write THEN
        outcome := 'INSERTED';
        RETURN;
    END IF;

    -- 7. Write: the members the subject count passed over as due get their Expired tombstone
    --    (what this caller saw end stays ended for a caller whose clock lags), the evicted
    --    theirs, then the record and its creation.
    IF p_cap_max IS NOT NULL THEN
        PERFORM "leasehold".tombstone(
            ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                  WHERE s.id = ANY (v_members) AND s.state = 0 AND s.expires_at <= v_at),
            6::smallint, v_at);
    END IF;
    PERFORM "leasehold".tombstone(evicted, 5::smallint, v_at);
    INSERT INTO "leasehold".sessions (
        id, subject, resource, kind, state, reason, revoked_at, version, created_at,
        last_seen_at, absolute_deadline, expires_at, generation, verifier, rotated_at,
        prev_verifier, prev_sealed, prev_successor_seen, retired, access_verifier,
        access_expires_at, binding, context_summary, data, data_version)
    VALUES (
        p_id, p_subject, p_resource, p_kind, p_state, p_reason, p_revoked_at, p_version,
        p_created_at, p_last_seen_at, p_absolute, p_expires_at, p_generation, p_verifier,
        p_rotated_at, p_prev_verifier, p_prev_sealed, p_prev_seen, p_retired,
        p_access_verifier, p_access_expires, p_binding, p_summary, p_data, p_data_version);
    IF p_rate_max IS NOT NULL THEN
        INSERT INTO "leasehold".creations (subject, session_id, logged_at, expires_at)
        VALUES (p_subject, p_id, v_at, v_at + p_rate_window_ms)
        ON CONFLICT (subject, session_id) DO NOTHING;
    END IF;
    outcome := 'INSERTED';
END
$fn$;

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

-- revoke_subject: the tombstone (reason 2) over every non-tombstone session of the subject,
-- expired or not; returns how many were live at `at`. The subject lock orders it against
-- inserts (an insert that committed first is seen; one that waits comes after).
CREATE OR REPLACE FUNCTION "leasehold".revoke_subject(
    p_subject text, p_now bigint, p_offset_ms bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_ids bytea[];
    v_at  bigint;
BEGIN
    INSERT INTO "leasehold".subjects AS s (subject, expires_at)
    VALUES (p_subject, 0)
    ON CONFLICT (subject) DO UPDATE SET expires_at = s.expires_at WHERE false;
    v_ids := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                   WHERE s.subject = p_subject AND s.state = 0
                   ORDER BY s.id FOR UPDATE);
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms));
    RETURN "leasehold".tombstone(v_ids, 2::smallint, v_at);
END
$fn$;

-- revoke_resource: as revoke_subject for every session tagged with the resource (reason 3).
CREATE OR REPLACE FUNCTION "leasehold".revoke_resource(
    p_resource text, p_now bigint, p_offset_ms bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_ids bytea[];
    v_at  bigint;
BEGIN
    INSERT INTO "leasehold".resources AS r (resource, expires_at)
    VALUES (p_resource, 0)
    ON CONFLICT (resource) DO UPDATE SET expires_at = r.expires_at WHERE false;
    v_ids := ARRAY(SELECT s.id FROM "leasehold".sessions AS s
                   WHERE s.resource = p_resource AND s.state = 0
                   ORDER BY s.id FOR UPDATE);
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms));
    RETURN "leasehold".tombstone(v_ids, 3::smallint, v_at);
END
$fn$;

-- take_ticket: ONE DELETE ... RETURNING. TAKEN (with the ticket) | EXPIRED (deleted) | MISSING
-- (absent, or the verifier differs: then the ticket stays). RETURNING is computed after the
-- row is locked and deleted, so the clock it reads follows any wait. Of concurrent callers at
-- most one deletes the row; the others re-check it after the winner commits and find nothing.
-- (bytea = is not constant-time: it compares verifiers, hashes of the secret, not secrets.)
CREATE OR REPLACE FUNCTION "leasehold".take_ticket(
    p_id bytea, p_verifier bytea, p_now bigint, p_offset_ms bigint)
RETURNS TABLE (t_outcome text, t_session_id bytea, t_created_at bigint, t_expires_at bigint)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
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

-- acquire_slot: ACQUIRED | SESSION_NOT_LIVE | SESSION_CAP | RESOURCE_CAP (23505 for a
-- duplicate slot id). A slot counts while unexpired at `at` AND its session is live. Locks:
-- the resource row (only with a per-resource cap), then the session row (serializes
-- acquisitions on one session, and a revocation of it, against this count). The slot is
-- stored rebased onto the judged time: acquired at `at`, expiring at `at + p_ttl_ms`.
CREATE OR REPLACE FUNCTION "leasehold".acquire_slot(
    p_id           bytea,
    p_session_id   bytea,
    p_resource     text,
    p_ttl_ms       bigint,
    p_per_session  integer,  -- NULL: no cap
    p_per_resource integer,  -- NULL: no cap
    p_now          bigint,
    p_offset_ms    bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_sess  "leasehold".sessions;
    v_found boolean;
    v_at    bigint;
    v_n     bigint;
BEGIN
    IF p_resource IS NOT NULL AND p_per_resource IS NOT NULL THEN
        INSERT INTO "leasehold".resources AS r (resource, expires_at)
        VALUES (p_resource, p_now + p_ttl_ms + 86400000)
        ON CONFLICT (resource) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE r.expires_at < p_now + p_ttl_ms;
    END IF;
    SELECT * INTO v_sess FROM "leasehold".sessions AS s
    WHERE s.id = p_session_id FOR NO KEY UPDATE;
    v_found := FOUND;
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- after the locks
    IF NOT v_found OR v_sess.state <> 0
       OR v_at >= least(v_sess.expires_at, v_sess.absolute_deadline) THEN
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
    VALUES (p_id, p_session_id, p_resource, v_at, v_at + p_ttl_ms);
    RETURN 'ACQUIRED';
END
$fn$;

-- heartbeat_slot: EXTENDED | MISSING (absent or expired: deleted) | SESSION_NOT_LIVE (the
-- slot is deleted). The new expiry is rebased onto the judged time: `at + p_ttl_ms`.
CREATE OR REPLACE FUNCTION "leasehold".heartbeat_slot(
    p_id bytea, p_ttl_ms bigint, p_now bigint, p_offset_ms bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_slot "leasehold".slots;
    v_at   bigint;
BEGIN
    SELECT * INTO v_slot FROM "leasehold".slots AS sl WHERE sl.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'MISSING';
    END IF;
    v_at := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- after the slot lock
    IF v_slot.expires_at <= v_at THEN
        DELETE FROM "leasehold".slots AS sl WHERE sl.id = p_id;
        RETURN 'MISSING';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM "leasehold".sessions AS se
                   WHERE se.id = v_slot.session_id AND se.state = 0
                     AND least(se.expires_at, se.absolute_deadline) > v_at) THEN
        DELETE FROM "leasehold".slots AS sl WHERE sl.id = p_id;
        RETURN 'SESSION_NOT_LIVE';
    END IF;
    UPDATE "leasehold".slots AS sl SET expires_at = v_at + p_ttl_ms WHERE sl.id = p_id;
    RETURN 'EXTENDED';
END
$fn$;

-- reap: removes at most p_limit records (sessions of any state, tickets, slots) whose deadline
-- is <= at, walking the expiry indexes with FOR UPDATE SKIP LOCKED: it never waits on a writer
-- or another reaper, and its cost follows what it removes. Returns one row per removed record
-- ('s' with the session's owner, resource and state, 't', 'l'). Bookkeeping rows (creation log
-- entries past their window, lock rows past their deadline) go too, up to p_limit each, not
-- returned and not counted.
CREATE OR REPLACE FUNCTION "leasehold".reap(p_now bigint, p_limit integer, p_offset_ms bigint)
RETURNS TABLE (r_what text, r_id bytea, r_subject text, r_resource text, r_state smallint,
               r_reason smallint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_at   bigint := greatest(p_now, "leasehold".clock_ms(p_offset_ms)); -- SKIP LOCKED: no wait follows
    v_left integer := greatest(p_limit, 0);
    v_n    integer;
BEGIN
    RETURN QUERY
    WITH victims AS (
        SELECT s.id FROM "leasehold".sessions AS s
        WHERE s.expires_at <= v_at ORDER BY s.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM "leasehold".sessions AS s USING victims AS v WHERE s.id = v.id
        RETURNING s.id, s.subject, s.resource, s.state, s.reason)
    SELECT 's'::text, g.id, g.subject, g.resource, g.state, g.reason FROM gone AS g;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_left := v_left - v_n;

    RETURN QUERY
    WITH victims AS (
        SELECT t.id FROM "leasehold".tickets AS t
        WHERE t.expires_at <= v_at ORDER BY t.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM "leasehold".tickets AS t USING victims AS v WHERE t.id = v.id RETURNING t.id)
    SELECT 't'::text, g.id, NULL::text, NULL::text, NULL::smallint, NULL::smallint FROM gone AS g;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_left := v_left - v_n;

    RETURN QUERY
    WITH victims AS (
        SELECT sl.id FROM "leasehold".slots AS sl
        WHERE sl.expires_at <= v_at ORDER BY sl.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM "leasehold".slots AS sl USING victims AS v WHERE sl.id = v.id RETURNING sl.id)
    SELECT 'l'::text, g.id, NULL::text, NULL::text, NULL::smallint, NULL::smallint FROM gone AS g;

    WITH victims AS (
        SELECT c.subject, c.session_id FROM "leasehold".creations AS c
        WHERE c.expires_at <= v_at ORDER BY c.expires_at LIMIT greatest(p_limit, 0)
        FOR UPDATE SKIP LOCKED)
    DELETE FROM "leasehold".creations AS c USING victims AS v
    WHERE c.subject = v.subject AND c.session_id = v.session_id;

    WITH victims AS (
        SELECT su.subject FROM "leasehold".subjects AS su
        WHERE su.expires_at <= v_at ORDER BY su.expires_at LIMIT greatest(p_limit, 0)
        FOR UPDATE SKIP LOCKED)
    DELETE FROM "leasehold".subjects AS su USING victims AS v WHERE su.subject = v.subject;

    WITH victims AS (
        SELECT r.resource FROM "leasehold".resources AS r
        WHERE r.expires_at <= v_at ORDER BY r.expires_at LIMIT greatest(p_limit, 0)
        FOR UPDATE SKIP LOCKED)
    DELETE FROM "leasehold".resources AS r USING victims AS v WHERE r.resource = v.resource;
END
$fn$;
