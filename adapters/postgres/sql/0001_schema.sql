-- leasehold store, contract v3: schema (migration 1).
--
-- Schema name: every object is qualified with the quoted identifier "leasehold". The adapter
-- (src/open.rs) replaces that exact token, double quotes included, with the configured schema
-- name, quoted; nothing else in this file contains it. No statement relies on search_path.
-- The adapter runs each migration inside one transaction that first takes a transaction-scoped
-- advisory lock on the schema name, so many processes may start at once; it records applied
-- versions in "leasehold".schema_migrations.
--
-- Times are bigint milliseconds since the Unix epoch (the engine's Timestamp is u64 ms): exact
-- round trips and integer comparisons. People read them through the view
-- "leasehold".sessions_readable.
--
-- One column per field of the engine's SessionRecord: the adapter maps a row to a record and
-- back (src/row.rs), refusing as corrupt any row the engine's own codec would refuse. The
-- column order below is the order of the functions' parameters (0002_functions.sql).

CREATE TABLE IF NOT EXISTS "leasehold".sessions (
    id                  bytea    PRIMARY KEY,
    subject             text     NOT NULL,
    resource            text     NULL,
    kind                text     NOT NULL,
    state               smallint NOT NULL,
    reason              smallint NULL,
    revoked_at          bigint   NULL,
    version             bigint   NOT NULL,
    created_at          bigint   NOT NULL,
    last_seen_at        bigint   NOT NULL,
    absolute_deadline   bigint   NOT NULL,
    expires_at          bigint   NOT NULL,
    generation          bigint   NOT NULL,
    verifier            bytea    NOT NULL,
    rotated_at          bigint   NOT NULL,
    prev_verifier       bytea    NULL,
    prev_sealed         bytea    NULL,
    prev_successor_seen boolean  NULL,
    retired             bytea[]  NOT NULL,
    access_verifier     bytea    NULL,
    access_expires_at   bigint   NULL,
    binding             bytea    NULL,
    context_summary     text     NULL,
    data                bytea    NOT NULL,
    data_version        bigint   NOT NULL,
    -- Insertion order: "oldest" among sessions created in the same millisecond.
    seq                 bigint   GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT sessions_id_len CHECK (octet_length(id) = 18),
    CONSTRAINT sessions_subject_len CHECK (octet_length(subject) BETWEEN 1 AND 256),
    CONSTRAINT sessions_resource_len
        CHECK (resource IS NULL OR octet_length(resource) BETWEEN 1 AND 256),
    CONSTRAINT sessions_kind CHECK (kind ~ '^[a-z0-9]{1,16}$'),
    CONSTRAINT sessions_state CHECK (
        (state = 0 AND reason IS NULL AND revoked_at IS NULL)
        OR (state = 1 AND reason BETWEEN 1 AND 6 AND revoked_at IS NOT NULL)),
    CONSTRAINT sessions_expiry_within_deadline CHECK (expires_at <= absolute_deadline),
    CONSTRAINT sessions_created_before_deadline CHECK (created_at <= absolute_deadline),
    CONSTRAINT sessions_times CHECK (created_at >= 0 AND last_seen_at >= 0 AND expires_at >= 0
                                     AND rotated_at >= 0 AND coalesce(revoked_at, 0) >= 0),
    CONSTRAINT sessions_counters CHECK (version >= 0 AND data_version >= 0 AND generation >= 0),
    CONSTRAINT sessions_verifier_len CHECK (octet_length(verifier) = 32),
    CONSTRAINT sessions_previous CHECK (
        (prev_verifier IS NULL AND prev_sealed IS NULL AND prev_successor_seen IS NULL)
        OR (octet_length(prev_verifier) = 32 AND prev_successor_seen IS NOT NULL
            AND (prev_sealed IS NULL OR octet_length(prev_sealed) = 32))),
    CONSTRAINT sessions_access CHECK (
        (access_verifier IS NULL AND access_expires_at IS NULL)
        OR (octet_length(access_verifier) = 32 AND access_expires_at >= 0)),
    CONSTRAINT sessions_binding_len CHECK (binding IS NULL OR octet_length(binding) = 32)
);
COMMENT ON TABLE "leasehold".sessions IS
    'leasehold sessions (live, expired not yet reaped, tombstones). Times: ms since the Unix epoch. Never read from a replica: a stale read grants a revoked session.';
COMMENT ON COLUMN "leasehold".sessions.id IS
    '18 bytes: the 2-byte shard tag of the subject, then 16 random bytes (the token selector, not a secret)';
COMMENT ON COLUMN "leasehold".sessions.kind IS 'the token prefix the session was issued under (part of its identity)';
COMMENT ON COLUMN "leasehold".sessions.state IS '0 active, 1 tombstone (final: only the reaper removes it)';
COMMENT ON COLUMN "leasehold".sessions.reason IS
    'tombstone reason: 1 revoked, 2 subject, 3 resource, 4 reuse detected, 5 evicted, 6 expired (observed); NULL while active';
COMMENT ON COLUMN "leasehold".sessions.expires_at IS
    'min(last seen + idle timeout, absolute_deadline); a tombstone''s is at most its revocation + 7 days. Reaped after it';
COMMENT ON COLUMN "leasehold".sessions.verifier IS 'hash of the current secret (never the secret)';
COMMENT ON COLUMN "leasehold".sessions.prev_sealed IS
    'the current secret sealed under a key derived from the previous secret; dropped once the grace and orphan windows closed';
COMMENT ON COLUMN "leasehold".sessions.retired IS 'verifiers of older secrets, newest last: presenting one is reuse';
COMMENT ON COLUMN "leasehold".sessions.binding IS 'hash of the context binding (never the binding)';

-- list_subject, list_sessions(Subject), revoke_subject.
CREATE INDEX IF NOT EXISTS sessions_subject_idx ON "leasehold".sessions (subject, id);
-- The subject cap: its open (non-tombstone) members in creation order, so a capped insert costs
-- in proportion to them, not to the subject's tombstones.
CREATE INDEX IF NOT EXISTS sessions_subject_open_idx ON "leasehold".sessions (subject, created_at, seq)
    WHERE state = 0;
-- list_sessions(Resource), revoke_resource.
CREATE INDEX IF NOT EXISTS sessions_resource_idx ON "leasehold".sessions (resource, id)
    WHERE resource IS NOT NULL;
-- reap: ORDER BY expires_at LIMIT n FOR UPDATE SKIP LOCKED.
CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON "leasehold".sessions (expires_at);
-- The global cap: open sessions by deadline (count the live ones) and by creation (evict the
-- store's oldest).
CREATE INDEX IF NOT EXISTS sessions_open_expiry_idx ON "leasehold".sessions (expires_at)
    WHERE state = 0;
CREATE INDEX IF NOT EXISTS sessions_open_creation_idx ON "leasehold".sessions (created_at, seq)
    WHERE state = 0;

-- Lock rows. Capped inserts and revoke_subject lock the subject's row first, inserts with a
-- resource and revoke_resource (and slot acquisitions under a per-resource cap) the resource's.
-- A lock anchor only: expires_at is past its sessions' deadlines, and the reaper deletes it
-- after that.
CREATE TABLE IF NOT EXISTS "leasehold".subjects (
    subject    text   PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS subjects_expiry_idx ON "leasehold".subjects (expires_at);

CREATE TABLE IF NOT EXISTS "leasehold".resources (
    resource   text   PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS resources_expiry_idx ON "leasehold".resources (expires_at);

-- The store-wide lock row: taken only by inserts under a global cap, so an exact global cap
-- serializes those inserts (and counts live sessions: O(live) each).
CREATE TABLE IF NOT EXISTS "leasehold".store_lock (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO "leasehold".store_lock (singleton) VALUES (true) ON CONFLICT DO NOTHING;

-- The creation log of the per-subject rate limit: one row per counted creation, naming its
-- session (forget_creation removes exactly that one). Bookkeeping: reaped after expires_at.
CREATE TABLE IF NOT EXISTS "leasehold".creations (
    subject    text   NOT NULL,
    session_id bytea  NOT NULL,
    logged_at  bigint NOT NULL,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    expires_at bigint NOT NULL,
    PRIMARY KEY (subject, session_id)
);
CREATE INDEX IF NOT EXISTS creations_window_idx ON "leasehold".creations (subject, logged_at, seq);
CREATE INDEX IF NOT EXISTS creations_expiry_idx ON "leasehold".creations (expires_at);

CREATE TABLE IF NOT EXISTS "leasehold".tickets (
    id         bytea  PRIMARY KEY,
    session_id bytea  NOT NULL,
    verifier   bytea  NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL, -- redeemable strictly before this
    CONSTRAINT tickets_len CHECK (octet_length(id) = 18 AND octet_length(session_id) = 18
                                  AND octet_length(verifier) = 32)
);
COMMENT ON COLUMN "leasehold".tickets.verifier IS 'hash of the ticket secret (never the secret)';
CREATE INDEX IF NOT EXISTS tickets_expiry_idx ON "leasehold".tickets (expires_at);

-- No foreign key to sessions: the reaper removes sessions and slots independently (SKIP
-- LOCKED), and a slot counts only while its session is live anyway.
CREATE TABLE IF NOT EXISTS "leasehold".slots (
    id          bytea  PRIMARY KEY,
    session_id  bytea  NOT NULL,
    resource    text   NULL,
    acquired_at bigint NOT NULL,
    expires_at  bigint NOT NULL,
    CONSTRAINT slots_len CHECK (octet_length(id) = 18 AND octet_length(session_id) = 18)
);
CREATE INDEX IF NOT EXISTS slots_session_idx ON "leasehold".slots (session_id, expires_at);
CREATE INDEX IF NOT EXISTS slots_resource_idx ON "leasehold".slots (resource, expires_at)
    WHERE resource IS NOT NULL;
CREATE INDEX IF NOT EXISTS slots_expiry_idx ON "leasehold".slots (expires_at);

-- For people, not for the adapter.
CREATE OR REPLACE VIEW "leasehold".sessions_readable AS
SELECT encode(id, 'hex') AS id, subject, resource, kind,
       CASE state WHEN 0 THEN 'active' ELSE 'tombstone' END AS state,
       CASE reason WHEN 1 THEN 'revoked' WHEN 2 THEN 'subject' WHEN 3 THEN 'resource'
                   WHEN 4 THEN 'reuse_detected' WHEN 5 THEN 'evicted' WHEN 6 THEN 'expired' END AS reason,
       to_timestamp(revoked_at / 1000.0) AS revoked_at, version,
       to_timestamp(created_at / 1000.0) AS created_at,
       to_timestamp(last_seen_at / 1000.0) AS last_seen_at,
       to_timestamp(expires_at / 1000.0) AS expires_at,
       to_timestamp(absolute_deadline / 1000.0) AS absolute_deadline,
       generation, binding IS NOT NULL AS bound, context_summary, octet_length(data) AS data_bytes,
       data_version
FROM "leasehold".sessions;
