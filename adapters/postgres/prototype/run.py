#!/usr/bin/env python3
"""Contract-v2 prototype check for the Postgres functions (issue 9 / issue 12).

Loads ../sql/schema.sql and ../sql/functions.sql into a fresh schema (the "leasehold"
placeholder replaced), exercises every outcome of every function against the local server
through psql (stdlib only: no driver), and drops the schema at the end.

    python3 adapters/postgres/prototype/run.py  # from the repository root
    LEASEHOLD_PG="-h 127.0.0.1 -p 5432 -U postgres -d test" python3 ...   # other server

Exit status 0 iff every check passed.
"""

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SQL_DIR = os.path.join(HERE, "..", "sql")
CONN = shlex.split(os.environ.get("LEASEHOLD_PG", "-h 127.0.0.1 -p 5432 -U postgres -d test"))
PSQL = ["psql", "-X", *CONN, "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-F", "\x1f", "-P", "null=<null>"]
SCHEMA = f"lh_proto_{os.getpid()}"
S = f'"{SCHEMA}"'
SEP = "\x1f"
NULL = "<null>"
DOMAIN = b"leasehold/v1/shard\0"

PASSED, FAILED = [], []


def check(name, cond, detail=""):
    (PASSED if cond else FAILED).append(name)
    mark = "ok  " if cond else "FAIL"
    print(f"  {mark} {name}" + (f"  [{detail}]" if detail and not cond else (f"  ({detail})" if detail else "")))


class PsqlError(Exception):
    def __init__(self, stderr):
        super().__init__(stderr.strip())
        self.stderr = stderr


def psql(sql):
    """Runs sql (one or more statements) in one psql process; returns the rows."""
    p = subprocess.run(PSQL, input=sql, capture_output=True, text=True)
    if p.returncode != 0:
        raise PsqlError(p.stderr)
    return [line.split(SEP) for line in p.stdout.splitlines() if line != ""]


def one(sql):
    rows = psql(sql)
    assert len(rows) == 1, (sql, rows)
    return rows[0]


def sql_file(name, schema=SCHEMA):
    with open(os.path.join(SQL_DIR, name)) as f:
        return f.read().replace('"leasehold"', f'"{schema}"')


# ---------------------------------------------------------------------------------- records

COLS = ["id", "subject", "resource", "kind", "state", "reason", "revoked_at", "version",
        "created_at", "last_seen_at", "absolute_deadline", "expires_at", "generation", "verifier",
        "rotated_at", "prev_verifier", "prev_sealed", "prev_successor_seen", "retired", "binding",
        "context_summary", "data", "data_version"]
TYPES = {"id": "bytea", "subject": "text", "resource": "text", "kind": "text", "state": "smallint",
         "reason": "smallint", "revoked_at": "bigint", "version": "bigint", "created_at": "bigint",
         "last_seen_at": "bigint", "absolute_deadline": "bigint", "expires_at": "bigint",
         "generation": "bigint", "verifier": "bytea", "rotated_at": "bigint",
         "prev_verifier": "bytea", "prev_sealed": "bytea", "prev_successor_seen": "boolean",
         "retired": "bytea[]", "binding": "bytea", "context_summary": "text", "data": "bytea",
         "data_version": "bigint"}


def tag(subject):
    return hashlib.sha256(DOMAIN + subject.encode()).digest()[:2]


def new_id(subject):
    return tag(subject) + os.urandom(16)


def lit(v, typ):
    if v is None:
        return f"NULL::{typ}"
    if typ == "bytea":
        return f"'\\x{v.hex()}'::bytea"
    if typ == "bytea[]":
        return "ARRAY[" + ",".join(f"'\\x{b.hex()}'::bytea" for b in v) + "]::bytea[]"
    if typ == "text":
        return "'" + v.replace("'", "''") + "'"
    if typ == "boolean":
        return "true" if v else "false"
    return f"{int(v)}::{typ}"


def rec(subject, now, life=3_600_000, **kw):
    r = dict(id=new_id(subject), subject=subject, resource=None, kind=None, state=0, reason=None,
             revoked_at=None, version=1, created_at=now, last_seen_at=now,
             absolute_deadline=now + life, expires_at=now + life, generation=0,
             verifier=os.urandom(32), rotated_at=now, prev_verifier=None, prev_sealed=None,
             prev_successor_seen=None, retired=[], binding=None, context_summary="Firefox on Linux",
             data=b"app-data", data_version=0)
    r.update(kw)
    return r


def row(r):
    return "ROW(" + ", ".join(lit(r[c], TYPES[c]) for c in COLS) + f")::{S}.sessions"


def tombstone(r, at, reason):
    return dict(r, state=1, reason=reason, revoked_at=at, version=r["version"] + 1)


def insert(r, now, cap=None, evict=False, rate=None, window=None, global_cap=None, offset=0):
    out = one(f"SELECT outcome, coalesce(retry_after_ms::text, ''), "
              f"array_to_string(ARRAY(SELECT encode(e, 'hex') FROM unnest(evicted) AS e), ',') "
              f"FROM {S}.insert_session({row(r)}, {lit(cap, 'integer')}, {lit(evict, 'boolean')}, "
              f"{lit(rate, 'integer')}, {lit(window, 'bigint')}, {lit(global_cap, 'bigint')}, {now}, {offset})")
    return out[0], (int(out[1]) if out[1] else None), [bytes.fromhex(h) for h in out[2].split(",") if h]


def cas(new, expected, now, offset=0):
    return one(f"SELECT {S}.compare_and_swap({row(new)}, {expected}, {now}, {offset})")[0]


def load(id_, offset=0):
    """(store_time, stored row as dict of text values, or None)."""
    rows = psql(f"SELECT l.store_time, " + ", ".join(
        f"(l.rec).{c}::text" if TYPES[c] != "bytea" else f"encode((l.rec).{c}, 'hex')" for c in COLS)
        + f" FROM {S}.load_session({lit(id_, 'bytea')}, {offset}) AS l")
    assert len(rows) == 1
    t, *vals = rows[0]
    stored = dict(zip(COLS, vals))
    return int(t), (None if stored["id"] == NULL else stored)


def field(id_, col):
    return one(f"SELECT {col}::text FROM {S}.sessions WHERE id = {lit(id_, 'bytea')}")[0]


def state_of(id_):
    rows = psql(f"SELECT state, coalesce(reason, 0), version, coalesce(revoked_at, 0) "
                f"FROM {S}.sessions WHERE id = {lit(id_, 'bytea')}")
    return tuple(int(x) for x in rows[0]) if rows else None


def server_ms():
    return int(one(f"SELECT {S}.clock_ms(0)")[0])


def put_ticket(session_id, verifier, created, expires):
    tid = session_id[:2] + os.urandom(16)
    psql(f"INSERT INTO {S}.tickets VALUES ({lit(tid, 'bytea')}, {lit(session_id, 'bytea')}, "
         f"{lit(verifier, 'bytea')}, {created}, {expires})")
    return tid


def take(tid, verifier, now, offset=0):
    return one(f"SELECT outcome, coalesce(encode(session_id, 'hex'), '') "
               f"FROM {S}.take_ticket({lit(tid, 'bytea')}, {lit(verifier, 'bytea')}, {now}, {offset})")


def acquire(session_id, resource, now, expires, per_session=None, per_resource=None, offset=0, slot_id=None):
    sid = slot_id or (session_id[:2] + os.urandom(16))
    out = one(f"SELECT {S}.acquire_slot({lit(sid, 'bytea')}, {lit(session_id, 'bytea')}, "
              f"{lit(resource, 'text')}, {now}, {expires}, {lit(per_session, 'integer')}, "
              f"{lit(per_resource, 'integer')}, {now}, {offset})")[0]
    return out, sid


# ------------------------------------------------------------------------- parallel helpers

def gate_key():
    return 770000 + os.getpid() % 10000


def run_gated(sqls):
    """Starts one psql process per SQL text; all of them block on a shared advisory lock that
    this process holds exclusively (a test gate only), and start together once every one is
    waiting. Returns (RESULT lines per process, stderr per process)."""
    key = gate_key()
    holder = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    holder.stdin.write(f"SELECT pg_advisory_lock({key});\n")
    holder.stdin.flush()
    waitq = (f"SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
             f"FROM pg_locks WHERE locktype = 'advisory' AND objid = {key} AND classid = 0")
    for _ in range(200):
        if one(waitq)[0] == "1":
            break
        time.sleep(0.05)
    procs = []
    for sql in sqls:
        p = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdin.write(f"SELECT pg_advisory_lock_shared({key});\nSELECT pg_advisory_unlock_shared({key});\n{sql}\n")
        p.stdin.close()
        procs.append(p)
    for _ in range(600):
        if int(one(waitq)[1]) >= len(sqls):
            break
        time.sleep(0.05)
    waiting = int(one(waitq)[1])
    holder.stdin.write(f"SELECT pg_advisory_unlock({key});\n")
    holder.stdin.close()
    holder.wait()
    results, errors = [], []
    for p in procs:
        out, err = p.stdout.read(), p.stderr.read()
        p.wait()
        results.append([line.split(SEP)[1:] for line in out.splitlines() if line.startswith("RESULT")])
        errors.append(err.strip())
    return results, errors, waiting


class Background:
    """A psql session fed statement by statement (for lock-wait demonstrations)."""

    def __init__(self):
        self.p = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

    def send(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()

    def finish(self):
        self.p.stdin.close()
        out, err = self.p.stdout.read(), self.p.stderr.read()
        self.p.wait()
        return out, err


def wait_for_lock_holder(pattern):
    """Waits until a backend whose query matches pattern is idle in transaction (holds its locks)."""
    for _ in range(200):
        rows = psql(f"SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                    f"AND query LIKE '{pattern}'")
        if rows and rows[0][0] != "0":
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------ the checks

def test_migrations():
    print("migrations: 8 processes run schema.sql + functions.sql at once on a fresh schema")
    script = sql_file("schema.sql") + "\n" + sql_file("functions.sql")
    procs = [subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for p in procs:
        p.stdin.write(script)
        p.stdin.close()
    errs = [p.stderr.read() for p in procs]
    codes = [p.wait() for p in procs]
    check("8 concurrent migration runs all succeed", codes == [0] * 8, str([e for e in errs if "ERROR" in e][:1]))
    check("schema_migrations has versions 1 and 2",
          psql(f"SELECT array_agg(version ORDER BY version) FROM {S}.schema_migrations") == [["{1,2}"]])
    # Negative control (informational): the same without the advisory lock.
    failures = 0
    for trial in range(3):
        other = f"{SCHEMA}_nolock{trial}"
        script = (sql_file("schema.sql", other) + sql_file("functions.sql", other)).replace(
            "SELECT pg_advisory_xact_lock(hashtextextended('leasehold store migration', 0));", "")
        procs = [subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
        for p in procs:
            p.stdin.write(script)
            p.stdin.close()
        errs = [p.stderr.read() for p in procs]
        codes = [p.wait() for p in procs]
        failures += sum(1 for c in codes if c != 0)
        kinds = sorted({line.split("ERROR:")[1].strip() for e in errs for line in e.splitlines() if "ERROR:" in line})
        if kinds:
            print(f"    (no lock, trial {trial}: {sum(1 for c in codes if c)} of 8 failed: {kinds})")
        psql(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
    print(f"    observed without the advisory lock: {failures} of 24 runs failed")


def test_load(N):
    print("load_session: record + store time in one statement")
    t, r = load(os.urandom(18))
    wall = int(time.time() * 1000)
    check("absent id -> no record, store_time = server clock", r is None and abs(t - wall) < 5000, f"{t} vs {wall}")
    t, _ = load(os.urandom(18), offset=3_600_000)
    check("test offset +1h shifts store_time", abs(t - wall - 3_600_000) < 5000, str(t - wall))
    a = rec("load-subject", N)
    insert(a, N)
    t, r = load(a["id"])
    check("present id -> the row", r is not None and r["subject"] == "load-subject" and r["data"] == b"app-data".hex())


def test_insert(N):
    print("insert_session")
    a = rec("alice", N)
    check("plain insert -> INSERTED", insert(a, N)[0] == "INSERTED")
    check("replay of the identical record -> INSERTED (idempotent)", insert(a, N + 5)[0] == "INSERTED")
    check("replay wrote nothing", one(f"SELECT count(*) FROM {S}.sessions WHERE subject = 'alice'")[0] == "1")
    check("same id, other bytes -> ALREADY_EXISTS", insert(dict(a, data=b"other"), N)[0] == "ALREADY_EXISTS")
    bad = rec("alice", N)
    bad["id"] = bytes([bad["id"][0] ^ 0xFF, bad["id"][1]]) + bad["id"][2:]
    check("id without the subject's shard tag -> INVALID_WRITE", insert(bad, N)[0] == "INVALID_WRITE")
    check("a tombstone is not insertable -> INVALID_WRITE",
          insert(tombstone(rec("alice", N), N, 1), N)[0] == "INVALID_WRITE")
    # Shard tag derivation matches engine/src/ids.rs (SHA-256 of domain || subject) incl. UTF-8.
    u = rec("zoë 🔑", N)
    check("shard tag of a UTF-8 subject accepted", insert(u, N)[0] == "INSERTED")

    # Rate: 3 creations allowed earlier (max 3), then max 2: count 3 >= 2, retry after the
    # (3-2+1) = 2nd oldest leaves the window, not the oldest.
    W = 10_000
    for k in range(3):
        o = insert(rec("rate-r", N + 1000 * k), N + 1000 * k, rate=3, window=W)
        check(f"rate: creation {k + 1}/3 -> INSERTED", o[0] == "INSERTED")
    o = insert(rec("rate-r", N + 3000), N + 3000, rate=3, window=W)
    check("rate max 3, 3 in window -> RATE_LIMITED retry 7000 (oldest: k=1)", o[:2] == ("RATE_LIMITED", 7000), str(o))
    o = insert(rec("rate-r", N + 3000), N + 3000, rate=2, window=W)
    check("rate max 2, 3 in window -> retry 8000 = 2nd oldest + window - at", o[:2] == ("RATE_LIMITED", 8000), str(o))
    check("refusal logged no creation and wrote no session",
          one(f"SELECT (SELECT count(*) FROM {S}.creations WHERE subject = 'rate-r'),"
              f" (SELECT count(*) FROM {S}.sessions WHERE subject = 'rate-r')") == ["3", "3"])
    o = insert(rec("rate-r", N + 11_000), N + 11_000, rate=2, window=W)
    check("rate: once 2 entries left the window -> INSERTED (retry was exact)", o[0] == "INSERTED", str(o))
    o = insert(rec("rate-r", N + 12_000), N + 12_000, rate=2, window=W)
    check("rate: window is (at - window, at]: the entry at exactly at - window no longer counts",
          o[0] == "INSERTED", str(o))

    # Subject cap, reject.
    c1, c2 = rec("carol", N), rec("carol", N + 1)
    insert(c1, N, cap=2)
    insert(c2, N + 1, cap=2)
    c3 = rec("carol", N + 2)
    check("subject cap 2 reject: third -> SUBJECT_CAP", insert(c3, N + 2, cap=2)[0] == "SUBJECT_CAP")
    check("refused record not written", state_of(c3["id"]) is None)

    # Subject cap, evict oldest by (created_at, id): equal created_at, tie broken by id.
    e1, e2 = rec("erin", N), rec("erin", N)
    first, second = sorted([e1, e2], key=lambda r: r["id"])
    insert(e1, N, cap=2, evict=True)
    insert(e2, N, cap=2, evict=True)
    e3 = rec("erin", N + 10)
    o = insert(e3, N + 10, cap=2, evict=True)
    check("evict: INSERTED evicting the oldest by (created_at, id)", o[0] == "INSERTED" and o[2] == [first["id"]],
          f"{o} first={first['id'].hex()}")
    check("evicted -> tombstone reason 5, version+1, revoked_at = at",
          state_of(first["id"]) == (1, 5, 2, N + 10), str(state_of(first["id"])))
    o = insert(rec("erin", N + 20), N + 20, cap=2, evict=True)
    check("evict again -> the next oldest", o[2] == [second["id"]], str(o))
    o = insert(rec("erin", N + 30), N + 30, cap=1, evict=True)
    check("lower cap (1) evicts 2 at once, oldest first", o[0] == "INSERTED" and len(o[2]) == 2, str(o))

    # Members due at `at` get an Expired tombstone (reason 6) and do not count.
    x1 = rec("xavier", N, life=500)
    insert(x1, N)
    x2 = rec("xavier", N + 1000)
    check("cap 1: due member does not count -> INSERTED", insert(x2, N + 1000, cap=1)[0] == "INSERTED")
    check("due member -> tombstone reason 6 (Expired)", state_of(x1["id"]) == (1, 6, 2, N + 1000), str(state_of(x1["id"])))
    y1, y2 = rec("yves", N), rec("yves", N, life=500)
    insert(y1, N)
    insert(y2, N)
    check("cap 1 reject with a live and a due member -> SUBJECT_CAP",
          insert(rec("yves", N + 1000), N + 1000, cap=1)[0] == "SUBJECT_CAP")
    check("... and the due member's Expired tombstone was written anyway", state_of(y2["id"])[:2] == (1, 6))

    # Global cap (exact): count live sessions at `at`; due active ones get Expired tombstones.
    g_due = rec("gus", N + 2000, life=500)
    insert(g_due, N + 2000)
    at = N + 3000
    live = int(one(f"SELECT count(*) FROM {S}.sessions WHERE state = 0 AND expires_at > {at}")[0])
    o = insert(rec("gus", at), at, global_cap=live)
    check(f"global cap = live ({live}) -> GLOBAL_CAP", o[0] == "GLOBAL_CAP", str(o))
    check("global-cap count tombstoned the due session (reason 6)", state_of(g_due["id"])[:2] == (1, 6))
    o = insert(rec("gus", at), at, global_cap=live + 1)
    check("global cap = live + 1 -> INSERTED", o[0] == "INSERTED", str(o))
    # Contract order: rate before global cap before subject cap.
    insert(rec("order", N), N, rate=1, window=W)
    o = insert(rec("order", N + 1), N + 1, rate=1, window=W, global_cap=0, cap=1)
    check("rate is checked before the global and subject caps", o[0] == "RATE_LIMITED", str(o))
    o = insert(rec("order", N + 1), N + 1, global_cap=0, cap=1)
    check("global cap is checked before the subject cap", o[0] == "GLOBAL_CAP", str(o))


def test_cas(N):
    print("compare_and_swap")
    a = rec("cas", N)
    insert(a, N)
    check("absent -> NOT_FOUND", cas(rec("cas", N), 1, N) == "NOT_FOUND")
    check("version differs -> CONFLICT", cas(dict(a, version=3), 2, N) == "CONFLICT")
    check("identity change: subject -> INVALID_WRITE", cas(dict(a, version=2, subject="mallory"), 1, N) == "INVALID_WRITE")
    check("identity change: resource -> INVALID_WRITE", cas(dict(a, version=2, resource="r"), 1, N) == "INVALID_WRITE")
    check("identity change: created_at -> INVALID_WRITE", cas(dict(a, version=2, created_at=N - 1), 1, N) == "INVALID_WRITE")
    check("identity change: absolute_deadline -> INVALID_WRITE",
          cas(dict(a, version=2, absolute_deadline=a["absolute_deadline"] + 1), 1, N) == "INVALID_WRITE")
    check("version not increased -> INVALID_WRITE", cas(dict(a, data=b"x"), 1, N) == "INVALID_WRITE")
    check("expires_at past absolute_deadline -> INVALID_WRITE",
          cas(dict(a, version=2, expires_at=a["absolute_deadline"] + 1), 1, N) == "INVALID_WRITE")
    b = dict(a, version=2, data=b"touched", last_seen_at=N + 10, expires_at=N + 3_000_000)
    check("valid swap -> OK", cas(b, 1, N + 10) == "OK")
    check("OK wrote the new row", field(a["id"], "data") == "\\x" + b"touched".hex() and field(a["id"], "version") == "2")
    check("stale writer (expected 1) -> CONFLICT", cas(dict(b, version=3), 1, N + 10) == "CONFLICT")
    due_at = b["expires_at"]
    check("due at `at` (caller clock) + not a tombstone -> NOT_FOUND",
          cas(dict(b, version=3, last_seen_at=due_at), 2, due_at) == "NOT_FOUND")
    check("version mismatch is reported before due (CONFLICT)", cas(dict(b, version=9), 7, due_at) == "CONFLICT")
    t = tombstone(b, due_at, 6)
    check("tombstone over a due record -> OK", cas(t, 2, due_at) == "OK")
    check("stored tombstone + right version -> NOT_FOUND", cas(dict(t, version=4, state=0, reason=None, revoked_at=None), 3, N) == "NOT_FOUND")
    check("stored tombstone + wrong version -> NOT_FOUND (not CONFLICT)", cas(dict(t, version=9), 1, N) == "NOT_FOUND")
    check("tombstone over a tombstone -> NOT_FOUND", cas(tombstone(t, N, 1), 3, N) == "NOT_FOUND")


def test_revoke(N):
    print("revoke_subject / revoke_resource")
    live = rec("rita", N)
    expired = rec("rita", N - 10_000, life=5_000)  # due at N, never tombstoned
    dead = rec("rita", N)
    for r in (live, expired, dead):
        insert(r, r["created_at"])
    cas(tombstone(dead, N, 1), 1, N)
    n = one(f"SELECT {S}.revoke_subject('rita', {N + 1})")[0]
    check("revoke_subject -> counts only the live one", n == "1", n)
    check("live member -> tombstone reason 2, version+1", state_of(live["id"]) == (1, 2, 2, N + 1))
    check("expired (never tombstoned) member -> tombstone reason 2 too", state_of(expired["id"]) == (1, 2, 2, N + 1))
    check("existing tombstone untouched (reason 1, version 2)", state_of(dead["id"]) == (1, 1, 2, N))
    check("revoke_subject again -> 0", one(f"SELECT {S}.revoke_subject('rita', {N + 2})")[0] == "0")
    check("revoke_subject of an unknown subject -> 0", one(f"SELECT {S}.revoke_subject('nobody', {N})")[0] == "0")
    m1 = rec("res-a", N, resource="box-1")
    m2 = rec("res-b", N, resource="box-1")
    m3 = rec("res-b", N - 10_000, life=5_000, resource="box-1")
    other = rec("res-b", N, resource="box-2")
    for r in (m1, m2, m3, other):
        insert(r, r["created_at"])
    n = one(f"SELECT {S}.revoke_resource('box-1', {N + 1})")[0]
    check("revoke_resource across subjects -> 2 live", n == "2", n)
    check("members -> reason 3 (incl. the expired one)",
          [state_of(r["id"])[:2] for r in (m1, m2, m3)] == [(1, 3)] * 3)
    check("other resource untouched", state_of(other["id"])[:2] == (0, 0))
    check("revoke_resource again -> 0", one(f"SELECT {S}.revoke_resource('box-1', {N + 2})")[0] == "0")


def exec_ms(sqls):
    """Server-side execution times (EXPLAIN ANALYZE, ms) of statements run on ONE connection; the
    first call of a function on a connection also compiles and plans it, so callers skip it."""
    rows = psql("\n".join(f"EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) {q};" for q in sqls))
    return [float(r[0].split(":")[1].split()[0]) for r in rows if r[0].strip().startswith("Execution Time")]


def test_cost(N):
    print("cost of a capped insert follows live members, not tombstones (issue 9 item 4)")
    tag_sql = "substring(sha256('\\x6c65617365686f6c642f76312f736861726400'::bytea || convert_to('heavy', 'UTF8')) FROM 1 FOR 2)"
    psql(f"INSERT INTO {S}.sessions (id, subject, state, reason, revoked_at, version, created_at, last_seen_at,"
         f" absolute_deadline, expires_at, generation, verifier, rotated_at)"
         f" SELECT {tag_sql} || decode(md5(g::text), 'hex'), 'heavy', 1, 1, {N}, 2, {N}, {N}, {N + 3_600_000},"
         f" {N + 3_600_000}, 0, decode(md5(g::text) || md5(g::text), 'hex'), {N}"
         f" FROM generate_series(1, 10000) AS g; ANALYZE {S}.sessions")
    for subj in ("heavy", "light"):
        for _ in range(3):
            insert(rec(subj, N), N, cap=10)
    times = exec_ms([f"SELECT * FROM {S}.insert_session({row(rec(subj, N))}, 10, false, NULL, NULL, NULL, {N}, 0)"
                     for subj in ("light", "heavy", "light", "heavy", "light", "heavy")])
    cold, light, heavy = times[0], min(times[2::2]), min(times[1::2])
    print(f"    capped insert (3-6 live members), warm connection: with 10000 tombstones {heavy:.2f} ms, "
          f"without {light:.2f} ms (first call on the connection: {cold:.2f} ms, compiling and planning)")
    check("10000 tombstones do not slow a capped insert (< 3x + 1 ms)", heavy < 3 * light + 1.0, f"{heavy} vs {light}")


def test_tickets(N):
    print("take_ticket (one DELETE ... RETURNING)")
    s = rec("tess", N)
    insert(s, N)
    v = os.urandom(32)
    tid = put_ticket(s["id"], v, N, N + 30_000)
    check("wrong verifier -> MISSING", take(tid, os.urandom(32), N)[0] == "MISSING")
    check("... and the ticket stays", one(f"SELECT count(*) FROM {S}.tickets WHERE id = {lit(tid, 'bytea')}")[0] == "1")
    o = take(tid, v, N)
    check("right verifier, live -> TAKEN with its session", o == ["TAKEN", s["id"].hex()], str(o))
    check("taken again -> MISSING", take(tid, v, N)[0] == "MISSING")
    tid = put_ticket(s["id"], v, N, N + 30_000)
    check("at == expires_at -> EXPIRED (redeemable strictly before)", take(tid, v, N + 30_000)[0] == "EXPIRED")
    check("expired ticket deleted", one(f"SELECT count(*) FROM {S}.tickets WHERE id = {lit(tid, 'bytea')}")[0] == "0")
    check("unknown ticket -> MISSING", take(os.urandom(18), v, N)[0] == "MISSING")


def test_slots(N):
    print("acquire_slot")
    exp = N + 60_000
    check("missing session -> SESSION_NOT_LIVE", acquire(os.urandom(18), None, N, exp)[0] == "SESSION_NOT_LIVE")
    dead = rec("sam", N)
    insert(dead, N)
    cas(tombstone(dead, N, 1), 1, N)
    check("tombstoned session -> SESSION_NOT_LIVE", acquire(dead["id"], None, N, exp)[0] == "SESSION_NOT_LIVE")
    due = rec("sam", N, life=1000)
    insert(due, N)
    check("session due at `at` -> SESSION_NOT_LIVE", acquire(due["id"], None, N + 1000, exp)[0] == "SESSION_NOT_LIVE")
    s1 = rec("sam", N)
    insert(s1, N)
    check("per-session cap 2: 1st -> ACQUIRED", acquire(s1["id"], None, N, exp, per_session=2)[0] == "ACQUIRED")
    check("per-session cap 2: 2nd -> ACQUIRED", acquire(s1["id"], None, N, N + 100, per_session=2)[0] == "ACQUIRED")
    check("per-session cap 2: 3rd -> SESSION_CAP", acquire(s1["id"], None, N, exp, per_session=2)[0] == "SESSION_CAP")
    check("an expired slot does not count -> ACQUIRED",
          acquire(s1["id"], None, N + 100, exp, per_session=2)[0] == "ACQUIRED")
    p1, p2 = rec("pam", N, resource="gpu"), rec("quinn", N, resource="gpu")
    insert(p1, N)
    insert(p2, N)
    check("per-resource cap 2: p1 -> ACQUIRED", acquire(p1["id"], "gpu", N, exp, per_resource=2)[0] == "ACQUIRED")
    check("per-resource cap 2: p2 -> ACQUIRED", acquire(p2["id"], "gpu", N, exp, per_resource=2)[0] == "ACQUIRED")
    check("per-resource cap 2 across sessions: 3rd -> RESOURCE_CAP",
          acquire(p2["id"], "gpu", N, exp, per_resource=2)[0] == "RESOURCE_CAP")
    cas(tombstone(p1, N, 1), 1, N)
    check("revoking a holder frees its capacity at once -> ACQUIRED",
          acquire(p2["id"], "gpu", N, exp, per_resource=2)[0] == "ACQUIRED")
    o, sid = acquire(p2["id"], None, N, exp)
    try:
        acquire(p2["id"], None, N, exp, slot_id=sid)
        check("duplicate slot id -> unique_violation (AlreadyExists)", False)
    except PsqlError as e:
        check("duplicate slot id -> unique_violation (AlreadyExists)", "duplicate key" in e.stderr, e.stderr[:80])


def test_clock_offset():
    print("server clock offset (test hook)")
    srv = server_ms()
    s = rec("clock", srv)  # expires 1 h after the server's now
    insert(s, srv)
    v = os.urandom(32)
    tid = put_ticket(s["id"], v, srv, srv + 600_000)
    ahead = 2 * 3_600_000
    t, _ = load(s["id"], offset=ahead)
    check("store ahead: load returns the shifted store time", t - srv >= ahead - 1000, str(t - srv))
    check("store ahead: CAS with a caller clock before the deadline -> NOT_FOUND",
          cas(dict(s, version=2), 1, srv, offset=ahead) == "NOT_FOUND")
    check("store ahead: take_ticket -> EXPIRED", take(tid, v, srv, offset=ahead)[0] == "EXPIRED")
    check("store ahead: acquire_slot -> SESSION_NOT_LIVE",
          acquire(s["id"], None, srv, srv + 60_000, offset=ahead)[0] == "SESSION_NOT_LIVE")
    check("store ahead: insert under cap 1 treats the member as due -> INSERTED, member Expired",
          insert(rec("clock", srv), srv, cap=1, offset=ahead)[0] == "INSERTED" and state_of(s["id"])[:2] == (1, 6))
    s2 = rec("clock2", srv)
    insert(s2, srv)
    tid = put_ticket(s2["id"], v, srv, srv + 600_000)
    late = s2["expires_at"] + 1
    check("store behind: caller clock past the deadline still decides: CAS -> NOT_FOUND",
          cas(dict(s2, version=2), 1, late, offset=-ahead) == "NOT_FOUND")
    check("store behind: take_ticket with a late caller -> EXPIRED", take(tid, v, late, offset=-ahead)[0] == "EXPIRED")
    check("store behind, caller on time: CAS -> OK (control)", cas(dict(s2, version=2), 1, srv, offset=-ahead) == "OK")
    # A lagging caller cannot stretch a window: the rate window runs on the server clock.
    lag = srv - 3_600_000
    insert(rec("lagger", lag), lag, rate=1, window=600_000)
    o = insert(rec("lagger", lag), lag, rate=1, window=600_000)
    check("lagging caller: rate judged at the server clock -> RATE_LIMITED with retry <= window",
          o[0] == "RATE_LIMITED" and 0 < o[1] <= 600_000, str(o))


def test_lock_waits():
    print("clock_timestamp() after a lock wait (two psql sessions)")
    srv = server_ms()
    s = rec("waiter", srv)
    insert(s, srv)
    holder = Background()
    holder.send(f"BEGIN; SELECT 1 /* lockdemo1 */ FROM {S}.sessions WHERE id = {lit(s['id'], 'bytea')} FOR UPDATE;")
    wait_for_lock_holder("%lockdemo1%")
    waiter = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiter.stdin.write(
        "BEGIN;\n"
        "SELECT 'RESULT', (extract(epoch FROM now()) * 1000)::bigint, (extract(epoch FROM clock_timestamp()) * 1000)::bigint;\n"
        f"SELECT 1 FROM {S}.sessions WHERE id = {lit(s['id'], 'bytea')} FOR UPDATE;\n"
        "SELECT 'RESULT', (extract(epoch FROM now()) * 1000)::bigint, (extract(epoch FROM clock_timestamp()) * 1000)::bigint;\n"
        "COMMIT;\n")
    waiter.stdin.close()
    time.sleep(2.0)
    holder.send("COMMIT;")
    holder.finish()
    out = waiter.stdout.read()
    waiter.wait()
    (n0, c0), (n1, c1) = [tuple(int(x) for x in line.split(SEP)[1:]) for line in out.splitlines() if line.startswith("RESULT")]
    check("now() is frozen at transaction start across the wait", n1 == n0, f"{n0} -> {n1}")
    check("clock_timestamp() after the wait is >= 1.8 s later", c1 - c0 >= 1800, f"{c1 - c0} ms")
    print(f"    before the wait: now()={n0} clock={c0}; after: now()={n1} (+{n1 - n0} ms) clock={c1} (+{c1 - c0} ms)")

    # Expiry during the lock wait: CAS judged after the lock.
    srv = server_ms()
    s = rec("waiter2", srv, life=1500)
    insert(s, srv)
    holder = Background()
    holder.send(f"BEGIN; SELECT 1 /* lockdemo2 */ FROM {S}.sessions WHERE id = {lit(s['id'], 'bytea')} FOR UPDATE;")
    wait_for_lock_holder("%lockdemo2%")
    t0 = time.time()
    casp = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    casp.stdin.write(f"SELECT {S}.compare_and_swap({row(dict(s, version=2))}, 1, {srv}, 0);\n")
    casp.stdin.close()
    time.sleep(1.9)
    holder.send("COMMIT;")
    holder.finish()
    out = casp.stdout.read().strip()
    casp.wait()
    check("CAS issued before the deadline, session expired while it waited for the row -> NOT_FOUND",
          out == "NOT_FOUND", f"{out} after {time.time() - t0:.1f}s")

    # take_ticket expiring during the wait: the RETURNING clock follows the lock.
    srv = server_ms()
    s = rec("waiter3", srv)
    insert(s, srv)
    v = os.urandom(32)
    tid = put_ticket(s["id"], v, srv, srv + 1500)
    holder = Background()
    holder.send(f"BEGIN; SELECT 1 /* lockdemo3 */ FROM {S}.tickets WHERE id = {lit(tid, 'bytea')} FOR UPDATE;")
    wait_for_lock_holder("%lockdemo3%")
    tk = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tk.stdin.write(f"SELECT outcome FROM {S}.take_ticket({lit(tid, 'bytea')}, {lit(v, 'bytea')}, {srv}, 0);\n")
    tk.stdin.close()
    time.sleep(1.9)
    holder.send("COMMIT;")
    holder.finish()
    out = tk.stdout.read().strip()
    tk.wait()
    check("take_ticket issued before expiry, expired during the lock wait -> EXPIRED", out == "EXPIRED", out)

    # The group-lock upsert locks the row even when its WHERE is false, and writes no new version.
    xmin0 = one(f"SELECT xmin::text FROM {S}.subjects WHERE subject = 'waiter'")[0]
    holder = Background()
    holder.send(f"BEGIN; INSERT INTO {S}.subjects AS s (subject, expires_at) VALUES ('waiter', 0) /* lockdemo6 */ "
                f"ON CONFLICT (subject) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE s.expires_at < 0;")
    wait_for_lock_holder("%lockdemo6%")
    try:
        psql(f"SELECT 1 FROM {S}.subjects WHERE subject = 'waiter' FOR UPDATE NOWAIT")
        locked = False
    except PsqlError as e:
        locked = "could not obtain lock" in e.stderr
    holder.send("COMMIT;")
    holder.finish()
    xmin1 = one(f"SELECT xmin::text FROM {S}.subjects WHERE subject = 'waiter'")[0]
    check("ON CONFLICT DO UPDATE ... WHERE false locks the row (FOR UPDATE NOWAIT fails) and writes no new version",
          locked and xmin0 == xmin1, f"locked={locked} xmin {xmin0} -> {xmin1}")

    # lock_timeout set on the functions.
    srv = server_ms()
    holder = Background()
    holder.send(f"BEGIN; SELECT 1 /* lockdemo4 */ FROM {S}.subjects WHERE subject = 'waiter' FOR UPDATE;")
    wait_for_lock_holder("%lockdemo4%")
    t0 = time.time()
    try:
        insert(rec("waiter", srv), srv)
        ok, err = False, "no error"
    except PsqlError as e:
        ok, err = "lock timeout" in e.stderr, e.stderr.strip()[:90]
    took = time.time() - t0
    holder.send("COMMIT;")
    holder.finish()
    check("insert blocked on the subject row fails with lock_timeout (55P03) after ~2 s",
          ok and 1.8 < took < 4.0, f"{err} after {took:.1f}s")


def test_reap():
    print("reap (expiry index, FOR UPDATE SKIP LOCKED)")
    srv = server_ms()
    at = srv + 10 * 86_400_000  # far ahead: everything of this run with a deadline before is due
    due = int(one(f"SELECT count(*) FROM {S}.sessions WHERE expires_at <= {at}")[0])
    keep = rec("keeper", srv, life=30 * 86_400_000)
    insert(keep, srv)
    locked = rec("locked", srv)
    insert(locked, srv)
    due += 1
    holder = Background()
    holder.send(f"BEGIN; SELECT 1 /* lockdemo5 */ FROM {S}.sessions WHERE id = {lit(locked['id'], 'bytea')} FOR UPDATE;")
    wait_for_lock_holder("%lockdemo5%")
    t0 = time.time()
    first = [int(x) for x in one(f"SELECT * FROM {S}.reap({at}, 5)")]
    took = time.time() - t0
    check("reap(limit 5) removes exactly 5 sessions, without waiting on a locked row",
          first[0] == 5 and took < 1.5, f"{first} in {took:.2f}s")
    total = first[0]
    while True:
        n = [int(x) for x in one(f"SELECT * FROM {S}.reap({at}, 50)")]
        total += n[0]
        if sum(n) == 0:
            break
    check("locked due row skipped (still there)", state_of(locked["id"]) is not None)
    holder.send("COMMIT;")
    holder.finish()
    check(f"reaped every other due session ({due - 1})", total == due - 1, f"{total} vs {due - 1}")
    n = [int(x) for x in one(f"SELECT * FROM {S}.reap({at}, 50)")]
    check("after the lock is released the skipped row is reaped", n[0] == 1, str(n))
    check("never removes a live record", state_of(keep["id"]) is not None)
    left = one(f"SELECT (SELECT count(*) FROM {S}.tickets WHERE expires_at <= {at}),"
               f" (SELECT count(*) FROM {S}.slots WHERE expires_at <= {at}),"
               f" (SELECT count(*) FROM {S}.creations WHERE expires_at <= {at}),"
               f" (SELECT count(*) FROM {S}.subjects WHERE expires_at <= {at})")
    check("tickets, slots, creation log and lock rows due are gone too", left == ["0"] * 4, str(left))


def test_lock_fairness():
    print("why group rows are locked exclusively: a flood of shared row locks starves FOR UPDATE")
    psql(f"CREATE TABLE {S}.fairness (k text PRIMARY KEY); INSERT INTO {S}.fairness VALUES ('x')")
    results = {}
    for mode in ("KEY SHARE", "NO KEY UPDATE"):
        flood = []
        for w in range(8):
            path = os.path.join(tempfile.gettempdir(), f"{SCHEMA}_fair{w}.sql")
            with open(path, "w") as f:
                f.write("\n".join(f"BEGIN; SELECT 1 FROM {S}.fairness WHERE k = 'x' FOR {mode}; SELECT pg_sleep(0.05); COMMIT;"
                                  for _ in range(100)))
            flood.append((subprocess.Popen(PSQL + ["-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), path))
        time.sleep(1.0)
        t0 = time.time()
        psql(f"BEGIN; SET LOCAL lock_timeout = '30s'; SELECT 1 FROM {S}.fairness WHERE k = 'x' FOR UPDATE; COMMIT;")
        results[mode] = time.time() - t0
        running = sum(p.poll() is None for p, _ in flood)
        for p, path in flood:
            p.wait()
            os.unlink(path)
        print(f"    8 connections looping FOR {mode} (50 ms each): a FOR UPDATE waited {results[mode]:.2f} s "
              f"(flood still running when it got the lock: {running}/8)")
    check("exclusive lockers queue fairly: FOR UPDATE gets the row within 3 s of a NO KEY UPDATE flood",
          results["NO KEY UPDATE"] < 3.0, f"{results['NO KEY UPDATE']:.2f}s")
    psql(f"DROP TABLE {S}.fairness")


def test_search_path():
    print("search_path independence")
    psql(f'CREATE SCHEMA "{SCHEMA}_decoy"; CREATE TABLE "{SCHEMA}_decoy".sessions (id bytea);'
         f'CREATE TABLE "{SCHEMA}_decoy".subjects (subject text)')
    srv = server_ms()
    r = rec("pathy", srv)
    out = one(f'SET search_path = "{SCHEMA}_decoy", public; SELECT outcome FROM {S}.insert_session({row(r)}, 3, false, NULL, NULL, NULL, {srv}, 0)')
    check("with a hostile search_path the functions still use their own schema",
          out == ["INSERTED"] and state_of(r["id"]) is not None)
    psql(f'DROP SCHEMA "{SCHEMA}_decoy" CASCADE')


def test_concurrency():
    print("concurrency across connections (separate psql processes, released together)")
    srv = server_ms()
    sqls = []
    for _ in range(64):
        r = rec("crowd", srv)
        sqls.append(f"SELECT 'RESULT', outcome FROM {S}.insert_session({row(r)}, 5, false, NULL, NULL, NULL, {srv}, 0);")
    results, errors, waiting = run_gated(sqls)
    outs = [r[0][0] if r else "ERROR" for r in results]
    print(f"    {waiting} connections waiting at the gate; outcomes: "
          f"INSERTED={outs.count('INSERTED')} SUBJECT_CAP={outs.count('SUBJECT_CAP')} other={len(outs) - outs.count('INSERTED') - outs.count('SUBJECT_CAP')}")
    check("64 concurrent capped inserts (cap 5, reject) -> exactly 5 INSERTED",
          outs.count("INSERTED") == 5 and outs.count("SUBJECT_CAP") == 59, str([e for e in errors if e][:1]))
    check("... and 5 live rows", one(f"SELECT count(*) FROM {S}.sessions WHERE subject = 'crowd' AND state = 0")[0] == "5")

    sqls = []
    for _ in range(64):
        r = rec("crowd-evict", srv)
        sqls.append(f"SELECT 'RESULT', outcome, cardinality(evicted) FROM {S}.insert_session({row(r)}, 5, true, NULL, NULL, NULL, {srv}, 0);")
    results, errors, _ = run_gated(sqls)
    outs = [r[0] if r else ["ERROR", "0"] for r in results]
    ev = sum(int(o[1]) for o in outs if o[0] == "INSERTED")
    counts = one(f"SELECT count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE reason = 5) FROM {S}.sessions WHERE subject = 'crowd-evict'")
    check("64 concurrent evicting inserts (cap 5) -> 64 INSERTED, 5 live, 59 evicted",
          [o[0] for o in outs].count("INSERTED") == 64 and counts == ["5", "59"] and ev == 59,
          f"{counts} evicted-reported={ev} {[e for e in errors if e][:1]}")

    s = rec("ticketed", srv)
    insert(s, srv)
    v = os.urandom(32)
    tid = put_ticket(s["id"], v, srv, srv + 600_000)
    sqls = [f"SELECT 'RESULT', outcome FROM {S}.take_ticket({lit(tid, 'bytea')}, {lit(v, 'bytea')}, {srv}, 0);"] * 64
    results, errors, _ = run_gated(sqls)
    outs = [r[0][0] if r else "ERROR" for r in results]
    print(f"    take_ticket: TAKEN={outs.count('TAKEN')} MISSING={outs.count('MISSING')}")
    check("64 concurrent take_ticket -> exactly one TAKEN, 63 MISSING",
          outs.count("TAKEN") == 1 and outs.count("MISSING") == 63, str([e for e in errors if e][:1]))

    holders = [rec(f"slotter-{i}", srv, resource="lab") for i in range(8)]
    for h in holders:
        insert(h, srv)
    sqls = [f"SELECT 'RESULT', {S}.acquire_slot({lit(h['id'][:2] + os.urandom(16), 'bytea')}, {lit(h['id'], 'bytea')}, 'lab', {srv}, {srv + 600_000}, NULL, 3, {srv}, 0);"
            for h in holders for _ in range(8)]
    results, errors, _ = run_gated(sqls)
    outs = [r[0][0] if r else "ERROR" for r in results]
    check("64 concurrent acquire_slot on one resource (8 sessions, cap 3) -> exactly 3 ACQUIRED",
          outs.count("ACQUIRED") == 3 and outs.count("RESOURCE_CAP") == 61, f"{outs.count('ACQUIRED')} {[e for e in errors if e][:1]}")

    # Lock order: a mix of group operations over overlapping subjects and resources never deadlocks.
    import random
    rnd = random.Random(7)
    sqls = []
    for w in range(32):
        stmts = []
        for k in range(6):
            subj, res = f"mix-s{rnd.randrange(4)}", f"mix-r{rnd.randrange(4)}"
            op = rnd.randrange(5)
            if op == 0:
                stmts.append(f"SELECT 'RESULT', {S}.revoke_subject('{subj}', {srv});")
            elif op == 1:
                stmts.append(f"SELECT 'RESULT', {S}.revoke_resource('{res}', {srv});")
            elif op == 2:
                stmts.append(f"SELECT 'RESULT', outcome FROM {S}.insert_session({row(rec(subj, srv, resource=res))}, 2, true, NULL, NULL, 100000, {srv}, 0);")
            elif op == 3:
                stmts.append(f"SELECT 'RESULT', outcome FROM {S}.insert_session({row(rec(subj, srv, resource=res))}, 3, true, 1000, 60000, NULL, {srv}, 0);")
            else:
                stmts.append(f"SELECT 'RESULT', {S}.acquire_slot('\\x{os.urandom(18).hex()}'::bytea, s.id, '{res}', {srv}, {srv + 60000}, 2, 2, {srv}, 0) "
                             f"FROM (SELECT id FROM {S}.sessions WHERE resource = '{res}' AND state = 0 LIMIT 1) s;")
        sqls.append("\n".join(stmts))
    results, errors, _ = run_gated(sqls)
    errs = [e for e in errors if e]
    deadlocks = sum("deadlock" in e for e in errs)
    check("32 connections x 6 mixed group operations (caps, evictions, global cap, revocations, slots): no error, no deadlock",
          not errs, f"{len(errs)} errors, {deadlocks} deadlocks: {errs[:1]}")

    # Bounded group operations under a flood on the same group (issue 9, item 10).
    flood = []
    for w in range(4):
        stmts = [f"SELECT {S}.insert_session({row(rec('flooded', srv, resource='flood-box'))}, NULL, NULL, NULL, NULL, NULL, {srv}, 0);"
                 for _ in range(2500)]
        path = os.path.join(tempfile.gettempdir(), f"{SCHEMA}_flood{w}.sql")
        with open(path, "w") as f:
            f.write("\n".join(stmts))
        p = subprocess.Popen(PSQL + ["-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        flood.append(p)
    for _ in range(100):
        if int(one(f"SELECT count(*) FROM {S}.sessions WHERE subject = 'flooded'")[0]) > 200:
            break
        time.sleep(0.02)
    t0 = time.time()
    n_res = one(f"SELECT {S}.revoke_resource('flood-box', {srv})")[0]
    t_res = time.time() - t0
    t0 = time.time()
    n_sub = one(f"SELECT {S}.revoke_subject('flooded', {srv})")[0]
    t_sub = time.time() - t0
    still = [p.poll() is None for p in flood]
    errs = [p.stderr.read() for p in flood]
    for w, p in enumerate(flood):
        p.wait()
        os.unlink(os.path.join(tempfile.gettempdir(), f"{SCHEMA}_flood{w}.sql"))
    total = one(f"SELECT count(*), count(*) FILTER (WHERE state = 0) FROM {S}.sessions WHERE subject = 'flooded'")
    print(f"    under a 4-connection insert flood on one subject and resource: revoke_resource {t_res * 1000:.0f} ms "
          f"({n_res} live revoked), revoke_subject {t_sub * 1000:.0f} ms ({n_sub}); flood still running after both: "
          f"{sum(still)}/4; flood total {total[0]} sessions, {total[1]} created after the revocations")
    check("revoke_resource and revoke_subject finish in bounded time (< 2 s) while an insert flood on the same group runs",
          t_res < 2 and t_sub < 2 and all(still) and int(n_res) > 0 and not any(errs),
          f"{t_res:.2f}s {t_sub:.2f}s running={still} {errs[:1]}")


def main():
    print(f"schema {SCHEMA} on {' '.join(CONN)}")
    try:
        test_migrations()
        N = server_ms() + 600_000  # caller 10 min ahead of the server: at = the caller's now exactly
        test_load(N)
        test_insert(N)
        test_cas(N)
        test_revoke(N)
        test_cost(N)
        test_tickets(N)
        test_slots(N)
        test_clock_offset()
        test_lock_waits()
        test_search_path()
        test_lock_fairness()
        test_concurrency()
        test_reap()
    finally:
        psql(f'DROP SCHEMA IF EXISTS {S} CASCADE; DROP SCHEMA IF EXISTS "{SCHEMA}_decoy" CASCADE')
        left = one(f"SELECT count(*) FROM pg_namespace WHERE nspname LIKE '{SCHEMA}%'")[0]
        print(f"cleanup: schema dropped ({left} left)")
    print(f"\n{len(PASSED)} checks passed, {len(FAILED)} failed")
    for f in FAILED:
        print(f"  FAILED: {f}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
