-- leasehold store, contract v2: schema (migration 1). PROTOTYPE for issue 12.
--
-- Schema name: every object is qualified with the quoted identifier "leasehold". The adapter
-- substitutes that exact token (double quotes included) with quote_ident(<configured schema>)
-- before running this file; nothing else in it contains that token (the shard-tag domain string
-- and the advisory-lock key do not). No statement relies on search_path.
--
-- Run as ONE transaction in one simple-query message (psql -1 -f, or sqlx::raw_sql). Safe when
-- many processes start at once: the transaction first takes a transaction-scoped advisory lock
-- (used for migrations only; the store itself uses row locks), so concurrent runs are serialized
-- and every later one finds the objects present. Without that lock, concurrent
-- `CREATE SCHEMA/TABLE IF NOT EXISTS` and `CREATE OR REPLACE FUNCTION` fail with
-- "duplicate key value violates unique constraint" / "tuple concurrently updated" (seen here).
--
-- Times are bigint milliseconds since the Unix epoch (the engine's Timestamp is u64 ms): exact
-- round trips, integer comparisons in every check, no time-zone or microsecond rounding in the
-- mapping. For reading them, use the view "leasehold".sessions_readable (timestamptz columns).

BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended('leasehold store migration', 0));

CREATE SCHEMA IF NOT EXISTS "leasehold";

CREATE TABLE IF NOT EXISTS "leasehold".schema_migrations (
    version     integer     PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per session: live, expired (not yet reaped) or tombstone.
CREATE TABLE IF NOT EXISTS "leasehold".sessions (
    id                  bytea    PRIMARY KEY,
    subject             text     NOT NULL,
    resource            text     NULL,
    kind                text     NULL,
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
    retired             bytea[]  NOT NULL DEFAULT '{}',
    binding             bytea    NULL,
    context_summary     text     NULL,
    data                bytea    NOT NULL DEFAULT '\x',
    data_version        bigint   NOT NULL DEFAULT 0,
    CONSTRAINT sessions_id_len CHECK (octet_length(id) = 18),
    CONSTRAINT sessions_subject_len CHECK (octet_length(subject) BETWEEN 1 AND 256),
    CONSTRAINT sessions_resource_len CHECK (resource IS NULL OR octet_length(resource) BETWEEN 1 AND 256),
    CONSTRAINT sessions_state CHECK (
        (state = 0 AND reason IS NULL AND revoked_at IS NULL)
        OR (state = 1 AND reason BETWEEN 1 AND 6 AND revoked_at IS NOT NULL)),
    CONSTRAINT sessions_expiry_within_deadline CHECK (expires_at <= absolute_deadline),
    CONSTRAINT sessions_created_before_deadline CHECK (created_at <= absolute_deadline),
    CONSTRAINT sessions_version CHECK (version >= 0 AND data_version >= 0 AND generation >= 0),
    CONSTRAINT sessions_verifier_len CHECK (octet_length(verifier) = 32),
    CONSTRAINT sessions_previous CHECK (
        (prev_verifier IS NULL AND prev_sealed IS NULL AND prev_successor_seen IS NULL)
        OR (octet_length(prev_verifier) = 32 AND prev_successor_seen IS NOT NULL
            AND (prev_sealed IS NULL OR octet_length(prev_sealed) = 32))),
    CONSTRAINT sessions_binding_len CHECK (binding IS NULL OR octet_length(binding) = 32)
);
COMMENT ON TABLE "leasehold".sessions IS
    'leasehold sessions. Times: ms since the Unix epoch. Never read from a replica: a stale read grants a revoked session.';
COMMENT ON COLUMN "leasehold".sessions.id IS '18 bytes: 2-byte shard tag of the subject || 16 random bytes (the token selector)';
COMMENT ON COLUMN "leasehold".sessions.kind IS 'reserved (nullable); not part of the engine record today';
COMMENT ON COLUMN "leasehold".sessions.state IS '0 active, 1 tombstone (final: only the reaper removes it)';
COMMENT ON COLUMN "leasehold".sessions.reason IS
    'tombstone reason: 1 revoked, 2 subject, 3 resource, 4 reuse detected, 5 evicted, 6 expired (observed); NULL while active';
COMMENT ON COLUMN "leasehold".sessions.expires_at IS
    'min(last seen + idle timeout, absolute_deadline); the session, or its tombstone, is reaped after it';
COMMENT ON COLUMN "leasehold".sessions.verifier IS 'hash of the current secret (never the secret)';

-- list_subject, capped insert, revoke_subject: (subject, state = 0) is the live-member range,
-- so a capped insert costs in proportion to the subject's non-tombstone members.
CREATE INDEX IF NOT EXISTS sessions_subject_idx ON "leasehold".sessions (subject, state);
-- revoke_resource
CREATE INDEX IF NOT EXISTS sessions_resource_idx ON "leasehold".sessions (resource, state)
    WHERE resource IS NOT NULL;
-- reap: ORDER BY expires_at LIMIT n FOR UPDATE SKIP LOCKED
CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON "leasehold".sessions (expires_at);
-- global cap: active sessions by deadline (count the live ones, tombstone the due ones)
CREATE INDEX IF NOT EXISTS sessions_active_expiry_idx ON "leasehold".sessions (expires_at)
    WHERE state = 0;

-- Per-subject lock rows (insert_session, revoke_subject lock the subject's row first). A lock
-- anchor only: expires_at is an upper bound of its sessions' deadlines (extended with a day of
-- slack, so most inserts do not rewrite it), and the reaper deletes it after that.
CREATE TABLE IF NOT EXISTS "leasehold".subjects (
    subject    text   PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS subjects_expiry_idx ON "leasehold".subjects (expires_at);

-- Creation log for the per-subject rate limit (one row per counted creation).
CREATE TABLE IF NOT EXISTS "leasehold".creations (
    subject    text   NOT NULL,
    created_at bigint NOT NULL,
    id         bytea  NOT NULL,
    expires_at bigint NOT NULL, -- created_at + window: reaped after it
    PRIMARY KEY (subject, created_at, id)
);
CREATE INDEX IF NOT EXISTS creations_expiry_idx ON "leasehold".creations (expires_at);

-- Per-resource lock rows (insert_session, revoke_resource, acquire_slot with a per-resource cap).
CREATE TABLE IF NOT EXISTS "leasehold".resources (
    resource   text   PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS resources_expiry_idx ON "leasehold".resources (expires_at);

-- The store-wide lock row: taken (FOR UPDATE) only by inserts that check a global cap, so an
-- exact global cap serializes those inserts (and counts live sessions: O(live)).
CREATE TABLE IF NOT EXISTS "leasehold".store_lock (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO "leasehold".store_lock (singleton) VALUES (true) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS "leasehold".tickets (
    id         bytea  PRIMARY KEY,
    session_id bytea  NOT NULL,
    verifier   bytea  NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL, -- redeemable strictly before this
    CONSTRAINT tickets_len CHECK (octet_length(id) = 18 AND octet_length(session_id) = 18
                                  AND octet_length(verifier) = 32)
);
CREATE INDEX IF NOT EXISTS tickets_expiry_idx ON "leasehold".tickets (expires_at);

-- No foreign key to sessions: the reaper removes sessions and slots independently (SKIP LOCKED),
-- and a slot counts only while its session is live anyway.
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
       generation, context_summary, octet_length(data) AS data_bytes, data_version
FROM "leasehold".sessions;

INSERT INTO "leasehold".schema_migrations (version, description)
VALUES (1, 'contract v2 schema') ON CONFLICT (version) DO NOTHING;

COMMIT;
