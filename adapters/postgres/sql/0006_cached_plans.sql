-- leasehold store: no SQL function planned on every call (migration 6). Needs migration 2.
--
-- A LANGUAGE sql function that cannot be inlined (these two modify data and pin their
-- search_path) is planned again on every call: measured 0.20-0.23 ms of server time for
-- tombstone() with nothing to do, which insert_session paid on every create (it tombstones
-- its evictions, usually none) and twice under a subject cap. PL/pgSQL caches a function's
-- plans per connection. Same bodies, same results; tombstone() returns at once when it is
-- given no ids. Same conventions as 0001_schema.sql ("leasehold" is the schema placeholder).

-- Writes the tombstone (reason p_reason, at p_at) over every listed session that is not one
-- yet, as SessionRecord::tombstone does: next version, expires_at lowered to at most p_at +
-- 7 days (TOMBSTONE_RETENTION), everything else kept. The caller holds the rows' locks.
-- Returns how many were live at p_at.
CREATE OR REPLACE FUNCTION "leasehold".tombstone(p_ids bytea[], p_reason smallint, p_at bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_live bigint;
BEGIN
    IF cardinality(p_ids) = 0 THEN
        RETURN 0;
    END IF;
    WITH t AS (
        UPDATE "leasehold".sessions AS s SET
            state = 1, reason = p_reason, revoked_at = p_at, version = s.version + 1,
            expires_at = least(s.expires_at, p_at + 604800000)
        WHERE s.id = ANY (p_ids) AND s.state = 0
        RETURNING s.expires_at)
    SELECT count(*) FILTER (WHERE t.expires_at > p_at) INTO v_live FROM t;
    RETURN v_live;
END
$fn$;

-- take_ticket: ONE DELETE ... RETURNING. TAKEN (with the ticket) | EXPIRED (deleted) | MISSING
-- (absent, or the verifier differs: then the ticket stays). As in migration 2.
CREATE OR REPLACE FUNCTION "leasehold".take_ticket(
    p_id bytea, p_verifier bytea, p_now bigint, p_offset_ms bigint)
RETURNS TABLE (t_outcome text, t_session_id bytea, t_created_at bigint, t_expires_at bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN QUERY
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
    LEFT JOIN taken ON true;
END
$fn$;
