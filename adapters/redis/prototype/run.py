#!/usr/bin/env python3
"""Contract-v2 prototype check for the Redis scripts (issue 9 / issue 13).

Loads ../lua/*.lua, then runs the same checks twice: against the standalone server
(127.0.0.1:6379) and against a 3-node Redis Cluster this script starts on 127.0.0.1:7000-7002
(stopped by pidfile at the end), each under a fresh key prefix without braces. The "adapter"
side of every cross-slot protocol (global cap, resource registration, revoke_resource,
per-resource slot caps) is written here in Python, as the Rust adapter will do it. Stdlib only:
a minimal RESP2 client over sockets, CRC16 slot routing for the Cluster.

    python3 adapters/redis/prototype/run.py  # from the repository root
    LEASEHOLD_REDIS_PORT=6379 LEASEHOLD_CLUSTER_PORTS=7000,7001,7002 python3 ...

Exit status 0 iff every check passed.
"""

import hashlib
import os
import tempfile
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA_DIR = os.path.join(HERE, "..", "lua")
HOST = "127.0.0.1"
STANDALONE_PORT = int(os.environ.get("LEASEHOLD_REDIS_PORT", "6379"))
CLUSTER_PORTS = [int(p) for p in os.environ.get("LEASEHOLD_CLUSTER_PORTS", "7000,7001,7002").split(",")]
OOM_PORT = int(os.environ.get("LEASEHOLD_OOM_PORT", "7010"))
RUN_DIR = os.path.join(tempfile.gettempdir(), f"leasehold-redis-proto-{os.getpid()}")
PREFIX = f"lhproto{os.getpid()}"
DOMAIN = b"leasehold/v1/shard\0"
RES_DOMAIN = b"leasehold/v1/resource\0"

PASSED, FAILED = [], []
SECTION = [""]


def check(name, cond, detail=""):
    name = f"[{SECTION[0]}] {name}"
    (PASSED if cond else FAILED).append(name)
    mark = "ok  " if cond else "FAIL"
    print(f"  {mark} {name}" + (f"  [{detail}]" if detail and not cond else (f"  ({detail})" if detail else "")))


# ------------------------------------------------------------------------------ RESP client

class ReplyError(Exception):
    pass


class Conn:
    def __init__(self, port, host=HOST):
        self.addr = (host, port)
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.f = self.sock.makefile("rb")

    def call(self, *args):
        enc = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(enc) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in enc))
        return self._read()

    def _read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ReplyError(f"bad reply {line!r}")

    def close(self):
        self.sock.close()


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def key_slot(key):
    key = key if isinstance(key, bytes) else key.encode()
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384


class Standalone:
    cluster = False

    def __init__(self, port):
        self.port = port
        self.c = Conn(port)

    def for_key(self, key):
        return self.c

    def nodes(self):
        return [self.c]

    def clone(self):
        return Standalone(self.port)

    def close(self):
        self.c.close()


class Cluster:
    cluster = True

    def __init__(self, ports):
        self.ports = ports
        seed = Conn(ports[0])
        self.ranges = [(r[0], r[1], int(r[2][1])) for r in seed.call("CLUSTER", "SLOTS")]
        seed.close()
        self.conns = {}

    def _conn(self, port):
        if port not in self.conns:
            self.conns[port] = Conn(port)
        return self.conns[port]

    def for_key(self, key):
        slot = key_slot(key)
        for lo, hi, port in self.ranges:
            if lo <= slot <= hi:
                return self._conn(port)
        raise ReplyError(f"no node for slot {slot}")

    def nodes(self):
        return [self._conn(p) for p in sorted({r[2] for r in self.ranges})]

    def clone(self):
        return Cluster(self.ports)

    def close(self):
        for c in self.conns.values():
            c.close()


# --------------------------------------------------------------------------- scripts

SCRIPTS = {}


def load_scripts():
    for name in sorted(os.listdir(LUA_DIR)):
        if name.endswith(".lua"):
            with open(os.path.join(LUA_DIR, name), "rb") as f:
                SCRIPTS[name[:-4]] = f.read()
    # cas, registered a second time with allow-oom for tombstone writes (revoke by id).
    body = SCRIPTS["cas"].split(b"\n", 1)[1]
    SCRIPTS["cas_oom"] = b"#!lua flags=allow-oom\n" + body
    return {n: hashlib.sha1(src).hexdigest() for n, src in SCRIPTS.items()}


SHAS = load_scripts()


def evalsha(client, name, keys, args, route=None):
    conn = client.for_key(route or keys[0])
    try:
        return conn.call("EVALSHA", SHAS[name], len(keys), *keys, *args)
    except ReplyError as e:
        if not str(e).startswith("NOSCRIPT"):
            raise
        conn.call("SCRIPT", "LOAD", SCRIPTS[name])
        return conn.call("EVALSHA", SHAS[name], len(keys), *keys, *args)


# --------------------------------------------------------------------------- records (v2)

def u64(n):
    return struct.pack("<Q", n)


def u32(n):
    return struct.pack("<I", n)


def shard_tag(subject):
    return hashlib.sha256(DOMAIN + subject.encode()).digest()[:2]


def res_tag(resource):
    return hashlib.sha256(RES_DOMAIN + resource.encode()).digest()[:2].hex()


def new_id(subject):
    return shard_tag(subject) + os.urandom(16)


def rec(subject, now, life=3_600_000, **kw):
    r = dict(id=new_id(subject), subject=subject, resource=None, state=0, reason=0, revoked_at=0,
             version=1, created_at=now, last_seen=now, deadline=now + life, expires_at=now + life,
             verifier=os.urandom(32), data=b"app-data", data_version=0, summary="Firefox on Linux")
    r.update(kw)
    return r


def encode(r):
    """Codec v2 session record: fixed header, identity, then plausible mutable fields."""
    subj = r["subject"].encode()
    b = bytes([2, 0x53, r["state"], r["reason"]]) + u64(r["revoked_at"]) + u64(r["version"])
    b += u64(r["expires_at"]) + u64(r["deadline"]) + u64(r["created_at"]) + r["id"]
    b += u32(len(subj)) + subj
    if r["resource"] is None:
        b += b"\x00"
    else:
        res = r["resource"].encode()
        b += b"\x01" + u32(len(res)) + res
    summary = r["summary"].encode()
    b += u64(r["last_seen"]) + u64(0) + r["verifier"] + u64(r["created_at"])  # generation, current, rotated_at
    b += b"\x00" + b"\x00" + b"\x00"  # no predecessor, no retired verifiers, no binding
    b += b"\x01" + u32(len(summary)) + summary + u32(len(r["data"])) + r["data"] + u64(r["data_version"])
    return b


def decode_header(b):
    state, reason = b[2], b[3]
    revoked_at, version, expires_at, deadline, created_at = struct.unpack_from("<5Q", b, 4)
    return dict(state=state, reason=reason, revoked_at=revoked_at, version=version,
                expires_at=expires_at, deadline=deadline, created_at=created_at, id=b[44:62])


def tombstone(r, at, reason):
    return dict(r, state=1, reason=reason, revoked_at=at, version=r["version"] + 1)


def ticket_bytes(tid, session_id, verifier, created, expires):
    return bytes([2, 0x54]) + tid + session_id + verifier + u64(created) + u64(expires)


def slot_bytes(sid, session_id, resource, acquired, expires):
    b = bytes([2, 0x4C]) + sid + session_id
    if resource is None:
        b += b"\x00"
    else:
        b += b"\x01" + u32(len(resource.encode())) + resource.encode()
    return b + u64(acquired) + u64(expires)


# --------------------------------------------------------------------------- the adapter side

class Store:
    """What the Rust adapter does around the scripts: key names, routing, cross-slot protocols."""

    def __init__(self, client, prefix=PREFIX):
        self.c, self.p = client, prefix

    # key layout
    def k_rec(self, id_):
        return f"{self.p}:s:{{{id_[:2].hex()}}}:{id_.hex()}"

    def k_subj(self, subject):
        return f"{self.p}:u:{{{shard_tag(subject).hex()}}}:{subject}"

    def k_rate(self, subject):
        return f"{self.p}:r:{{{shard_tag(subject).hex()}}}:{subject}"

    def k_res(self, resource):
        return f"{self.p}:m:{{{res_tag(resource)}}}:{resource}"

    def k_global(self):
        return f"{self.p}:g:{{global}}"

    def k_ticket(self, tid):
        return f"{self.p}:t:{{{tid[:2].hex()}}}:{tid.hex()}"

    def k_slot(self, sid):
        return f"{self.p}:l:{{{sid[:2].hex()}}}:{sid.hex()}"

    def k_sess_slots(self, session_id):
        return f"{self.p}:ls:{{{session_id[:2].hex()}}}:{session_id.hex()}"

    def k_res_slots(self, resource):
        return f"{self.p}:lr:{{{res_tag(resource)}}}:{resource}"

    def server_ms(self, key="x"):
        t = self.c.for_key(key).call("TIME")
        return int(t[0]) * 1000 + int(t[1]) // 1000

    def load(self, id_, offset=0):
        val, t = evalsha(self.c, "load", [self.k_rec(id_)], [offset])
        return val, t

    def get(self, id_):
        return self.c.for_key(self.k_rec(id_)).call("GET", self.k_rec(id_))

    def header(self, id_):
        b = self.get(id_)
        return decode_header(b) if b else None

    def insert(self, r, now, cap=0, evict=False, rate=0, window=0, global_cap=0, offset=0, raw=None,
               keys=None):
        """insert_session: [global reservation] -> [resource registration] -> subject-slot script;
        the earlier steps are undone if the script refuses."""
        b = raw if raw is not None else encode(r)
        reserved_global = registered = False
        if global_cap:
            out = evalsha(self.c, "index_reserve", [self.k_global()], [r["id"], r["deadline"], global_cap, now, offset, ""])
            if out[0] == b"FULL":
                return "GLOBAL_CAP", None, []
            reserved_global = True
        if r["resource"] is not None:
            evalsha(self.c, "index_reserve", [self.k_res(r["resource"])], [r["id"], r["deadline"], 0, now, offset, ""])
            registered = True
        keys = keys or [self.k_rec(r["id"]), self.k_subj(r["subject"]), self.k_rate(r["subject"])]
        out = evalsha(self.c, "insert", keys,
                      [self.p, b, now, offset, cap or 0, "evict" if evict else "reject", rate or 0, window or 0])
        status = out[0].decode()
        if status in ("RATE_LIMITED", "SUBJECT_CAP", "INVALID_WRITE"):
            if registered:
                evalsha(self.c, "index_remove", [self.k_res(r["resource"])], [r["id"]])
            if reserved_global:
                evalsha(self.c, "index_remove", [self.k_global()], [r["id"]])
        if status == "RATE_LIMITED":
            return status, int(out[1]), []
        if status == "INVALID_WRITE":
            return status, out[1].decode(), []
        return status, None, list(out[1:])

    def cas(self, new, expected, now, offset=0, raw=None):
        b = raw if raw is not None else encode(new)
        name = "cas_oom" if new["state"] == 1 else "cas"
        out = evalsha(self.c, name, [self.k_rec(new["id"]), self.k_subj(new["subject"])],
                      [b, expected, now, offset, self.p])
        return out[0].decode()

    def revoke_subject(self, subject, now, offset=0):
        out = evalsha(self.c, "revoke_subject", [self.k_subj(subject)], [self.p, now, offset])
        return out[0], out[1]

    def by_slot(self, ids):
        groups = {}
        for i in ids:
            groups.setdefault(key_slot(self.k_rec(i)), []).append(i)
        return groups

    def revoke_resource(self, resource, now, offset=0, crash_after_groups=None):
        """1. snapshot the resource index (the linearization point); 2. per slot, tombstone the
        snapshot's records there; 3. prune the ids now final from the index. A failure between
        steps leaves some slots revoked: the caller gets an error and retries (idempotent)."""
        snap = evalsha(self.c, "index_snapshot", [self.k_res(resource)], [])
        ids = snap[1:]
        live, final = 0, []
        for n, (slot, group) in enumerate(sorted(self.by_slot(ids).items())):
            if crash_after_groups is not None and n >= crash_after_groups:
                raise RuntimeError("simulated crash after %d slot groups" % n)
            out = evalsha(self.c, "revoke_members", [self.k_rec(i) for i in group], [self.p, now, offset, 3])
            live += out[0]
            final += out[1:]
        if final:
            evalsha(self.c, "index_remove", [self.k_res(resource)], final)
        return live, len(self.by_slot(ids))

    def put_ticket(self, session_id, verifier, created, expires):
        tid = session_id[:2] + os.urandom(16)
        k = self.k_ticket(tid)
        self.c.for_key(k).call("SET", k, ticket_bytes(tid, session_id, verifier, created, expires),
                               "PXAT", expires, "NX")
        return tid

    def take(self, tid, verifier, now, offset=0):
        out = evalsha(self.c, "take_ticket", [self.k_ticket(tid)], [verifier, now, offset])
        return out[0].decode(), (out[1] if len(out) > 1 else None)

    def acquire(self, session_id, resource, now, expires, per_session=0, per_resource=0, offset=0,
                sid=None, crash_after_reserve=False):
        """acquire_slot: [reserve in the resource's slot] -> session-slot script; release the
        reservation if the script refuses. When the resource looks full, check the holders'
        sessions and prune the dead ones (tombstone or gone: final), then try once more."""
        sid = sid or (session_id[:2] + os.urandom(16))
        member = sid + session_id
        reserved = False
        if resource is not None and per_resource:
            for attempt in range(2):
                out = evalsha(self.c, "index_reserve", [self.k_res_slots(resource)],
                              [member, expires, per_resource, now, offset, "members"])
                if out[0] == b"OK":
                    reserved = True
                    break
                dead = [m for m in out[1:] if not self.session_final_check(m[18:])]
                if not dead or attempt == 1:
                    return "RESOURCE_CAP", sid
                evalsha(self.c, "index_remove", [self.k_res_slots(resource)], dead)
            if crash_after_reserve:
                return "CRASHED", sid
        out = evalsha(self.c, "acquire_slot",
                      [self.k_rec(session_id), self.k_slot(sid), self.k_sess_slots(session_id)],
                      [slot_bytes(sid, session_id, resource, now, expires), per_session or 0, now, offset])
        status = out[0].decode()
        if status != "ACQUIRED" and reserved:
            evalsha(self.c, "index_remove", [self.k_res_slots(resource)], [member])
        return status, sid

    def session_final_check(self, session_id):
        """True if the session may still be live (present and not a tombstone). A tombstone or
        an absent record is final: it never becomes live again."""
        h = self.header(session_id)
        return h is not None and h["state"] == 0

    def all_keys(self):
        keys = []
        for node in self.c.nodes():
            cursor = b"0"
            while True:
                cursor, batch = node.call("SCAN", cursor, "MATCH", f"{self.p}:*", "COUNT", 1000)
                keys += [(node, k) for k in batch]
                if cursor == b"0":
                    break
        return keys

    def cleanup(self):
        n = 0
        for node, k in self.all_keys():
            n += node.call("DEL", k)
        return n


# --------------------------------------------------------------------------- the checks

def run_suite(client, label):
    SECTION[0] = label
    st = Store(client)
    srv = st.server_ms()
    N = srv + 600_000  # caller 10 min ahead of the server: at = the caller's now exactly
    print(f"== {label}: prefix {PREFIX}")

    if client.cluster:  # our own nodes only (never flush a shared server's scripts)
        for node in client.nodes():
            node.call("SCRIPT", "FLUSH")  # exercise the NOSCRIPT -> SCRIPT LOAD path

    print("load")
    v, t = st.load(os.urandom(18))
    wall = int(time.time() * 1000)
    check("absent -> nil + store time (server TIME)", v is None and abs(t - wall) < 5000, str(t - wall))
    v, t = st.load(os.urandom(18), offset=3_600_000)
    check("test offset shifts the store time", abs(t - wall - 3_600_000) < 5000)
    a = rec("load-subject", N)
    st.insert(a, N)
    v, t = st.load(a["id"])
    check("present -> the record bytes", v == encode(a))

    print("insert")
    a = rec("alice", N)
    check("plain insert -> INSERTED", st.insert(a, N)[0] == "INSERTED")
    k = st.k_rec(a["id"])
    check("record TTL is PXAT expires_at", st.c.for_key(k).call("PEXPIRETIME", k) == a["expires_at"])
    ks = st.k_subj("alice")
    check("subject index TTL = its latest absolute deadline", st.c.for_key(ks).call("PEXPIRETIME", ks) == a["deadline"])
    check("replay of identical bytes -> INSERTED (idempotent)", st.insert(a, N + 5)[0] == "INSERTED")
    check("same id, other bytes -> ALREADY_EXISTS", st.insert(dict(a, data=b"other"), N)[0] == "ALREADY_EXISTS")
    bad = rec("alice", N)
    bad["id"] = bytes([bad["id"][0] ^ 0xFF, bad["id"][1]]) + bad["id"][2:]
    bk = [st.k_rec(bad["id"]), f"{PREFIX}:u:{{{bad['id'][:2].hex()}}}:alice", f"{PREFIX}:r:{{{bad['id'][:2].hex()}}}:alice"]
    o = st.insert(bad, N, keys=bk)
    check("id without the subject's shard tag -> INVALID_WRITE (SHA-256 in Lua)", o[:2] == ("INVALID_WRITE", "shard tag"), str(o))
    wrong = f"{PREFIX}:s:{{{shard_tag('alice').hex()}}}:{os.urandom(18).hex()}"  # same slot, another id
    check("keys not derived from the record -> INVALID_WRITE",
          st.insert(rec("alice", N), N, keys=[wrong, ks, st.k_rate("alice")])[:2] == ("INVALID_WRITE", "keys"))
    check("a prefix containing { -> INVALID_WRITE", Store(client, prefix="x{y}").insert(rec("alice", N), N)[:2] == ("INVALID_WRITE", "prefix"))
    check("a tombstone is not insertable -> INVALID_WRITE", st.insert(tombstone(rec("alice", N), N, 1), N)[0] == "INVALID_WRITE")
    check("UTF-8 subject: Lua SHA-256 tag matches", st.insert(rec("zoë 🔑", N), N)[0] == "INSERTED")
    W = 10_000
    for i in range(3):
        check(f"rate: creation {i + 1}/3 -> INSERTED", st.insert(rec("rate-r", N + 1000 * i), N + 1000 * i, rate=3, window=W)[0] == "INSERTED")
    o = st.insert(rec("rate-r", N + 3000), N + 3000, rate=3, window=W)
    check("rate max 3 -> RATE_LIMITED retry 7000", o[:2] == ("RATE_LIMITED", 7000), str(o))
    o = st.insert(rec("rate-r", N + 3000), N + 3000, rate=2, window=W)
    check("rate max 2 with 3 in window -> retry 8000 (the 2nd oldest, not the oldest)", o[:2] == ("RATE_LIMITED", 8000), str(o))
    kr = st.k_rate("rate-r")
    check("refusal logged nothing", st.c.for_key(kr).call("ZCARD", kr) == 3)
    check("rate log TTL = last creation + window", st.c.for_key(kr).call("PEXPIRETIME", kr) == N + 2000 + W)
    check("rate: after 2 left the window -> INSERTED", st.insert(rec("rate-r", N + 11_000), N + 11_000, rate=2, window=W)[0] == "INSERTED")
    check("rate: the entry at exactly at - window no longer counts",
          st.insert(rec("rate-r", N + 12_000), N + 12_000, rate=2, window=W)[0] == "INSERTED")
    c1, c2, c3 = rec("carol", N), rec("carol", N + 1), rec("carol", N + 2)
    st.insert(c1, N, cap=2)
    st.insert(c2, N + 1, cap=2)
    check("cap 2 reject: third -> SUBJECT_CAP", st.insert(c3, N + 2, cap=2)[0] == "SUBJECT_CAP")
    check("refused record not written", st.get(c3["id"]) is None)
    e1, e2 = rec("erin", N), rec("erin", N)
    first, second = sorted([e1, e2], key=lambda r: r["id"])
    st.insert(e1, N, cap=2, evict=True)
    st.insert(e2, N, cap=2, evict=True)
    o = st.insert(rec("erin", N + 10), N + 10, cap=2, evict=True)
    check("evict: oldest by (created_at, id) (equal created_at: lower id)", o[0] == "INSERTED" and o[2] == [first["id"]], str(o))
    h = st.header(first["id"])
    check("evicted: tombstone in place, reason 5, version+1, revoked_at = at",
          (h["state"], h["reason"], h["version"], h["revoked_at"]) == (1, 5, 2, N + 10), str(h))
    kf = st.k_rec(first["id"])
    check("evicted tombstone keeps PXAT at its deadline", st.c.for_key(kf).call("PEXPIRETIME", kf) == first["expires_at"])
    check("evicted leaves the subject index", st.c.for_key(st.k_subj("erin")).call("ZSCORE", st.k_subj("erin"), first["id"]) is None)
    check("evict again -> the next oldest", st.insert(rec("erin", N + 20), N + 20, cap=2, evict=True)[2] == [second["id"]])
    o = st.insert(rec("erin", N + 30), N + 30, cap=1, evict=True)
    check("cap lowered to 1 evicts 2, oldest first", o[0] == "INSERTED" and len(o[2]) == 2, str(o))
    x1 = rec("xavier", N, life=500)
    st.insert(x1, N)
    check("cap 1: a due member does not count -> INSERTED", st.insert(rec("xavier", N + 1000), N + 1000, cap=1)[0] == "INSERTED")
    h = st.header(x1["id"])
    check("due member -> Expired tombstone (6) written in the same script", (h["state"], h["reason"], h["version"]) == (1, 6, 2), str(h))
    y1, y2 = rec("yves", N), rec("yves", N, life=500)
    st.insert(y1, N)
    st.insert(y2, N)
    check("cap 1 reject, one live + one due -> SUBJECT_CAP", st.insert(rec("yves", N + 1000), N + 1000, cap=1)[0] == "SUBJECT_CAP")
    check("... and the due member's tombstone was written anyway", st.header(y2["id"])["reason"] == 6)
    # Global cap: a reservation in its own slot (upper bound on a Cluster).
    gk = st.k_global()
    g1 = rec("gus", N)
    check("global cap 2: 1st -> INSERTED", st.insert(g1, N, global_cap=2)[0] == "INSERTED")
    check("global cap 2: 2nd -> INSERTED", st.insert(rec("gus", N), N, global_cap=2)[0] == "INSERTED")
    check("global cap 2: 3rd -> GLOBAL_CAP", st.insert(rec("gus", N), N, global_cap=2)[0] == "GLOBAL_CAP")
    o = st.insert(rec("gus", N), N, global_cap=3, cap=2)
    check("global reservation undone when the subject cap refuses",
          o[0] == "SUBJECT_CAP" and client.for_key(gk).call("ZCARD", gk) == 2, f"{o} {client.for_key(gk).call('ZCARD', gk)}")
    check("global cap counts a revoked session until its deadline (upper bound)",
          st.cas(tombstone(g1, N, 1), 1, N) == "OK" and st.insert(rec("gus2", N), N, global_cap=2)[0] == "GLOBAL_CAP")
    check("global cap counts only entries live at `at`", st.insert(rec("gus2", N + 3_600_000), N + 3_600_000, global_cap=2)[0] == "INSERTED")
    st.insert(rec("order", N), N, rate=1, window=W)
    o = st.insert(rec("order", N + 1), N + 1, rate=1, window=W, cap=1)
    check("rate is checked before the subject cap", o[0] == "RATE_LIMITED", str(o))
    o = st.insert(rec("order", N + 1), N + 1, rate=1, window=W, global_cap=1)
    check("cross-slot: a full global cap answers before the rate (contract order: rate first)", o[0] == "GLOBAL_CAP", str(o))

    print("compare_and_swap")
    a = rec("cas", N)
    st.insert(a, N)
    ka = st.k_rec(a["id"])
    check("absent -> NOT_FOUND", st.cas(rec("cas", N), 1, N) == "NOT_FOUND")
    check("version differs -> CONFLICT", st.cas(dict(a, version=3), 2, N) == "CONFLICT")
    raw = bytearray(encode(dict(a, version=2)))
    raw[66] ^= 1  # first subject byte (same length): only the identity bytes differ
    out = evalsha(client, "cas", [ka, st.k_subj("cas")], [bytes(raw), 1, N, 0, PREFIX])[0].decode()
    check("identity byte change (subject) -> INVALID_WRITE", out == "INVALID_WRITE", out)
    for fld, val in (("resource", "r"), ("created_at", N - 1), ("deadline", a["deadline"] + 1)):
        out = st.cas(dict(a, version=2, **{fld: val}), 1, N)
        check(f"identity byte change ({fld}) -> INVALID_WRITE", out == "INVALID_WRITE", out)
    check("version not increased -> INVALID_WRITE", st.cas(dict(a, data=b"x"), 1, N) == "INVALID_WRITE")
    check("expires_at past the absolute deadline -> INVALID_WRITE", st.cas(dict(a, version=2, expires_at=a["deadline"] + 1), 1, N) == "INVALID_WRITE")
    b = dict(a, version=2, data=b"touched!", last_seen=N + 10, expires_at=N + 3_000_000)
    check("valid swap -> OK", st.cas(b, 1, N + 10) == "OK")
    check("OK wrote the bytes and moved PXAT to the new expires_at",
          st.get(a["id"]) == encode(b) and client.for_key(ka).call("PEXPIRETIME", ka) == b["expires_at"])
    check("stale writer -> CONFLICT", st.cas(dict(b, version=3), 1, N) == "CONFLICT")
    due_at = b["expires_at"]
    check("due at `at` + not a tombstone -> NOT_FOUND", st.cas(dict(b, version=3), 2, due_at) == "NOT_FOUND")
    check("version mismatch reported before due -> CONFLICT", st.cas(dict(b, version=9), 7, due_at) == "CONFLICT")
    t = tombstone(b, due_at, 6)
    check("tombstone over a due record -> OK", st.cas(t, 2, due_at) == "OK")
    check("tombstone left the subject index", client.for_key(st.k_subj("cas")).call("ZSCORE", st.k_subj("cas"), a["id"]) is None)
    check("stored tombstone + right version -> NOT_FOUND", st.cas(dict(t, version=4, state=0, reason=0, revoked_at=0), 3, N) == "NOT_FOUND")
    check("stored tombstone + wrong version -> NOT_FOUND (not CONFLICT)", st.cas(dict(t, version=9, state=0), 1, N) == "NOT_FOUND")
    z = rec("cas", N)
    client.for_key(st.k_rec(z["id"])).call("SET", st.k_rec(z["id"]), b"\x02S garbage", "PX", 600_000)
    check("undecodable stored bytes -> CORRUPT", st.cas(dict(z, version=2), 1, N) == "CORRUPT")

    print("revoke_subject")
    live, expired, dead = rec("rita", N), rec("rita", N - 10_000, life=5_000), rec("rita", N)
    for r in (live, expired, dead):
        st.insert(r, r["created_at"])
    st.cas(tombstone(dead, N, 1), 1, N)
    before = {r["id"]: st.get(r["id"]) for r in (live, expired)}
    n, corrupt = st.revoke_subject("rita", N + 1)
    check("counts only the live member", n == 1, str(n))
    for nm, r in (("live", live), ("expired-but-not-tombstoned", expired)):
        after = st.get(r["id"])
        h = decode_header(after)
        check(f"{nm} member -> reason 2, version+1, only bytes 2..20 rewritten",
              (h["state"], h["reason"], h["version"], h["revoked_at"]) == (1, 2, 2, N + 1)
              and after[:2] == before[r["id"]][:2] and after[20:] == before[r["id"]][20:])
    kl = st.k_rec(live["id"])
    check("in-place tombstone keeps PXAT", client.for_key(kl).call("PEXPIRETIME", kl) == live["expires_at"])
    h = st.header(dead["id"])
    check("existing tombstone untouched", (h["reason"], h["version"]) == (1, 2))
    check("subject index emptied (key gone)", client.for_key(st.k_subj("rita")).call("EXISTS", st.k_subj("rita")) == 0)
    check("again -> 0", st.revoke_subject("rita", N + 2)[0] == 0)
    check("unknown subject -> 0", st.revoke_subject("nobody", N)[0] == 0)
    cz = rec("corrupted", N)
    st.insert(cz, N)
    cz2 = rec("corrupted", N)
    st.insert(cz2, N)
    client.for_key(st.k_rec(cz["id"])).call("SET", st.k_rec(cz["id"]), b"junk", "KEEPTTL")
    n, corrupt = st.revoke_subject("corrupted", N)
    check("an undecodable member is reported and does not stop the others", (n, corrupt) == (1, 1) and st.header(cz2["id"])["state"] == 1, f"{n} {corrupt}")

    print("revoke_resource (cross-slot protocol)")
    members = [rec(f"res-user-{i}", N, resource="box-1") for i in range(8)]
    members.append(rec("res-user-x", N - 10_000, life=5_000, resource="box-1"))
    other = rec("res-user-0", N, resource="box-2")
    for r in members + [other]:
        st.insert(r, r["created_at"])
    kres = st.k_res("box-1")
    check("insert registered every member in the resource index", client.for_key(kres).call("ZCARD", kres) == 9)
    slots = {key_slot(st.k_rec(r["id"])) for r in members}
    if client.cluster:
        nodes = {client.for_key(st.k_rec(r["id"])).addr[1] for r in members}
        check("a resource's sessions span >= 2 slots (and nodes)", len(slots) >= 2 and len(nodes) >= 2, f"{len(slots)} slots, nodes {sorted(nodes)}")
    try:
        st.revoke_resource("box-1", N + 1, crash_after_groups=2)
    except RuntimeError:
        pass
    done = sum(1 for r in members if st.header(r["id"])["state"] == 1)
    live_done = sum(1 for r in members[:8] if st.header(r["id"])["state"] == 1)
    check("crash after 2 slot groups: those slots revoked, the others not (the caller saw an error)",
          0 < done < 9, f"{done} of 9 tombstoned, {len(slots)} slots")
    n, groups = st.revoke_resource("box-1", N + 1)
    check("retry finishes the job and counts only what was still live", n == 8 - live_done, f"{n} vs {8 - live_done}, {groups} slot groups")
    check("every member -> reason 3 (incl. the expired one)", all(st.header(r["id"])["reason"] == 3 for r in members))
    check("other resource untouched", st.header(other["id"])["state"] == 0)
    check("final ids pruned from the resource index", client.for_key(kres).call("ZCARD", kres) == 0)
    check("retry again -> 0 (idempotent)", st.revoke_resource("box-1", N + 2)[0] == 0)
    # An insert that registered but has not written its record (in flight, or crashed):
    # revoke skips it, does not prune it; if the record then appears it was created after the
    # snapshot (concurrent with the revocation).
    late = rec("late-user", N, resource="box-1")
    evalsha(client, "index_reserve", [kres], [late["id"], late["deadline"], 0, N, 0, ""])
    n, _ = st.revoke_resource("box-1", N + 3)
    check("registered-but-unwritten id: not counted, kept in the index", n == 0 and client.for_key(kres).call("ZSCORE", kres, late["id"]) is not None)
    st.insert(late, N)
    n, _ = st.revoke_resource("box-1", N + 4)
    check("once written, the next revocation finds it", n == 1 and st.header(late["id"])["reason"] == 3)
    st.insert(rec("res-refused", N, resource="box-1"), N, cap=1)
    o = st.insert(rec("res-refused", N, resource="box-1"), N, cap=1)
    check("registration undone when the insert is refused", o[0] == "SUBJECT_CAP" and client.for_key(kres).call("ZCARD", kres) == 1)

    print("take_ticket")
    s = rec("tess", N)
    st.insert(s, N)
    v = os.urandom(32)
    tid = st.put_ticket(s["id"], v, N, N + 30_000)
    kt = st.k_ticket(tid)
    check("ticket key shares the session's slot", key_slot(kt) == key_slot(st.k_rec(s["id"])))
    check("wrong verifier -> MISSING", st.take(tid, os.urandom(32), N)[0] == "MISSING")
    check("... and the ticket stays", client.for_key(kt).call("EXISTS", kt) == 1)
    o = st.take(tid, v, N)
    check("right verifier -> TAKEN with the ticket", o[0] == "TAKEN" and o[1][20:38] == s["id"])
    check("again -> MISSING", st.take(tid, v, N)[0] == "MISSING")
    tid = st.put_ticket(s["id"], v, N, N + 30_000)
    check("at == expires_at -> EXPIRED", st.take(tid, v, N + 30_000)[0] == "EXPIRED")
    check("expired ticket deleted", client.for_key(st.k_ticket(tid)).call("EXISTS", st.k_ticket(tid)) == 0)

    print("acquire_slot")
    exp = N + 60_000
    check("missing session -> SESSION_NOT_LIVE", st.acquire(os.urandom(18), None, N, exp)[0] == "SESSION_NOT_LIVE")
    d = rec("sam", N)
    st.insert(d, N)
    st.cas(tombstone(d, N, 1), 1, N)
    check("tombstoned session -> SESSION_NOT_LIVE", st.acquire(d["id"], None, N, exp)[0] == "SESSION_NOT_LIVE")
    du = rec("sam", N, life=1000)
    st.insert(du, N)
    check("session due at `at` -> SESSION_NOT_LIVE", st.acquire(du["id"], None, N + 1000, exp)[0] == "SESSION_NOT_LIVE")
    s1 = rec("sam", N)
    st.insert(s1, N)
    check("per-session cap 2: 1st -> ACQUIRED", st.acquire(s1["id"], None, N, exp, per_session=2)[0] == "ACQUIRED")
    o, short = st.acquire(s1["id"], None, N, N + 100, per_session=2)
    check("per-session cap 2: 2nd -> ACQUIRED", o == "ACQUIRED")
    check("slot keys share the session's slot", key_slot(st.k_slot(short)) == key_slot(st.k_rec(s1["id"])) == key_slot(st.k_sess_slots(s1["id"])))
    check("per-session cap 2: 3rd -> SESSION_CAP", st.acquire(s1["id"], None, N, exp, per_session=2)[0] == "SESSION_CAP")
    check("an expired slot does not count -> ACQUIRED", st.acquire(s1["id"], None, N + 100, exp, per_session=2)[0] == "ACQUIRED")
    check("duplicate slot id -> ALREADY_EXISTS", st.acquire(s1["id"], None, N, exp, sid=short)[0] == "ALREADY_EXISTS")
    holders = [rec(f"gpu-user-{i}", N, resource="gpu") for i in range(4)]
    for h in holders:
        st.insert(h, N)
    if client.cluster:
        check("the resource's slot holders live in >= 2 slots", len({key_slot(st.k_rec(h["id"])) for h in holders}) >= 2)
    check("per-resource cap 2: holder 0 -> ACQUIRED", st.acquire(holders[0]["id"], "gpu", N, exp, per_resource=2)[0] == "ACQUIRED")
    check("per-resource cap 2: holder 1 -> ACQUIRED", st.acquire(holders[1]["id"], "gpu", N, exp, per_resource=2)[0] == "ACQUIRED")
    check("per-resource cap 2 across slots: holder 2 -> RESOURCE_CAP", st.acquire(holders[2]["id"], "gpu", N, exp, per_resource=2)[0] == "RESOURCE_CAP")
    st.cas(tombstone(holders[0], N, 1), 1, N)
    check("a revoked holder's reservation is pruned (its session is final) -> ACQUIRED",
          st.acquire(holders[2]["id"], "gpu", N, exp, per_resource=2)[0] == "ACQUIRED")
    krs = st.k_res_slots("gpu")
    check("reservation released when the session step refuses (SESSION_CAP)",
          st.acquire(holders[3]["id"], "gpu2", N, exp, per_session=0, per_resource=5)[0] == "ACQUIRED"
          and st.acquire(holders[3]["id"], "gpu2", N, exp, per_session=1, per_resource=5)[0] == "SESSION_CAP"
          and client.for_key(st.k_res_slots("gpu2")).call("ZCARD", st.k_res_slots("gpu2")) == 1)
    o, crashed = st.acquire(holders[3]["id"], "gpu3", N, N + 5_000, per_resource=1, crash_after_reserve=True)
    check("crash between steps: the reservation alone counts -> RESOURCE_CAP",
          st.acquire(holders[1]["id"], "gpu3", N, exp, per_resource=1)[0] == "RESOURCE_CAP")
    check("... until its TTL (score) passes -> ACQUIRED",
          st.acquire(holders[1]["id"], "gpu3", N + 5_000, exp, per_resource=1)[0] == "ACQUIRED")
    check("never above the cap: 2 reservations counted for cap 2 on 'gpu'", client.for_key(krs).call("ZCOUNT", krs, f"({N}", "+inf") == 2)

    print("server clock offset (test hook)")
    srv = st.server_ms()
    s = rec("clock", srv)
    st.insert(s, srv)
    v = os.urandom(32)
    tid = st.put_ticket(s["id"], v, srv, srv + 600_000)
    ahead = 2 * 3_600_000
    check("store ahead: load returns the shifted time", st.load(s["id"], offset=ahead)[1] - srv >= ahead - 1000)
    check("store ahead: CAS -> NOT_FOUND", st.cas(dict(s, version=2), 1, srv, offset=ahead) == "NOT_FOUND")
    check("store ahead: take_ticket -> EXPIRED", st.take(tid, v, srv, offset=ahead)[0] == "EXPIRED")
    check("store ahead: acquire_slot -> SESSION_NOT_LIVE", st.acquire(s["id"], None, srv, srv + 60_000, offset=ahead)[0] == "SESSION_NOT_LIVE")
    check("store ahead: capped insert tombstones the member as Expired",
          st.insert(rec("clock", srv), srv, cap=1, offset=ahead)[0] == "INSERTED" and st.header(s["id"])["reason"] == 6)
    s2 = rec("clock2", srv)
    st.insert(s2, srv)
    tid = st.put_ticket(s2["id"], v, srv, srv + 600_000)
    late = s2["expires_at"] + 1
    check("store behind: a late caller still decides: CAS -> NOT_FOUND", st.cas(dict(s2, version=2), 1, late, offset=-ahead) == "NOT_FOUND")
    check("store behind: take_ticket with a late caller -> EXPIRED", st.take(tid, v, late, offset=-ahead)[0] == "EXPIRED")
    check("store behind, caller on time: CAS -> OK", st.cas(dict(s2, version=2), 1, srv, offset=-ahead) == "OK")
    lag = srv - 3_600_000
    st.insert(rec("lagger", lag), lag, rate=1, window=600_000)
    o = st.insert(rec("lagger", lag), lag, rate=1, window=600_000)
    check("lagging caller: rate window on the server clock (retry <= window)", o[0] == "RATE_LIMITED" and 0 < o[1] <= 600_000, str(o))

    print("reap_index (records expire natively; only index entries are cleaned)")
    kd = f"{PREFIX}:lr:{{{res_tag('reap')}}}:reap"
    node = client.for_key(kd)
    now_srv = st.server_ms(kd)
    node.call("ZADD", kd, now_srv - 5, "old1", now_srv - 4, "old2", now_srv - 3, "old3", now_srv + 600_000, "new")
    node.call("PEXPIREAT", kd, now_srv + 600_000)
    o = evalsha(client, "reap_index", [kd], ["deadline", 2, PREFIX, 0])
    check("deadline mode: removes at most `limit` past entries", o == [2, 1], str(o))
    o = evalsha(client, "reap_index", [kd], ["deadline", 2, PREFIX, 0])
    check("... then the rest; never a future one", o == [1, 0] and node.call("ZRANGE", kd, 0, -1) == [b"new"], str(o))
    mem = [rec("reaped", N) for _ in range(5)]
    for r in mem:
        st.insert(r, N)
    st.cas(tombstone(mem[0], N, 1), 1, N)
    ksr = st.k_subj("reaped")
    client.for_key(ksr).call("ZADD", ksr, N, mem[0]["id"])  # a stale entry (as if a tombstone were left)
    client.for_key(st.k_rec(mem[1]["id"])).call("DEL", st.k_rec(mem[1]["id"]))  # natively expired
    o = evalsha(client, "reap_index", [ksr], ["members", 3, PREFIX, 0])
    o2 = evalsha(client, "reap_index", [ksr], ["members", 3, PREFIX, o[1]])
    check("members mode: removes tombstoned and vanished members in bounded batches",
          o[0] + o2[0] == 2 and client.for_key(ksr).call("ZCARD", ksr) == 3, f"{o} {o2}")

    print("every key has a TTL")
    keys = st.all_keys()
    no_ttl = [k for node, k in keys if node.call("PTTL", k) < 0]
    check(f"all {len(keys)} keys under the prefix carry a TTL", not no_ttl, str(no_ttl[:3]))
    recs_late = []
    for node, k in keys:
        if b":s:{" in k:
            b = node.call("GET", k)
            if b and len(b) >= 67 and b[0] == 2 and node.call("PEXPIRETIME", k) > decode_header(b)["expires_at"]:
                recs_late.append(k)
    check("no record's TTL is later than its expires_at", not recs_late, str(recs_late[:2]))

    print("concurrency across connections (64 threads, one socket each)")
    def crowd(fn, n=64):
        barrier = threading.Barrier(n)
        out = [None] * n

        def worker(i):
            cl = client.clone()
            try:
                barrier.wait()
                out[i] = fn(Store(cl), i)
            except Exception as e:  # noqa: BLE001
                out[i] = f"ERROR {e}"
            finally:
                cl.close()
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return out
    srv = st.server_ms()
    outs = crowd(lambda s, i: s.insert(rec("crowd", srv), srv, cap=5)[0])
    print(f"    capped inserts: INSERTED={outs.count('INSERTED')} SUBJECT_CAP={outs.count('SUBJECT_CAP')}")
    check("64 concurrent capped inserts (cap 5) -> exactly 5", outs.count("INSERTED") == 5 and outs.count("SUBJECT_CAP") == 59)
    ksc = st.k_subj("crowd")
    check("... 5 members in the subject index", client.for_key(ksc).call("ZCARD", ksc) == 5)
    s = rec("ticketed", srv)
    st.insert(s, srv)
    tid = st.put_ticket(s["id"], v, srv, srv + 600_000)
    outs = crowd(lambda s_, i: s_.take(tid, v, srv)[0])
    print(f"    take_ticket: TAKEN={outs.count('TAKEN')} MISSING={outs.count('MISSING')}")
    check("64 concurrent take_ticket -> exactly one TAKEN", outs.count("TAKEN") == 1 and outs.count("MISSING") == 63)
    lab = [rec(f"lab-user-{i}", srv) for i in range(8)]
    for h in lab:
        st.insert(h, srv)
    outs = crowd(lambda s_, i: s_.acquire(lab[i % 8]["id"], "lab", srv, srv + 600_000, per_resource=3)[0])
    print(f"    slot acquisitions on one resource (8 sessions in {len({key_slot(st.k_rec(h['id'])) for h in lab})} slots): "
          f"ACQUIRED={outs.count('ACQUIRED')} RESOURCE_CAP={outs.count('RESOURCE_CAP')}")
    check("64 concurrent acquire_slot, per-resource cap 3 across slots -> exactly 3",
          outs.count("ACQUIRED") == 3 and outs.count("RESOURCE_CAP") == 61, str([o for o in outs if o.startswith("ERROR")][:1]))

    print("memory (MEMORY USAGE, one session with a 64-byte subject)")
    subj = "m" * 64
    r = rec(subj, srv)
    st.insert(r, srv)
    krm, ksm = st.k_rec(r["id"]), st.k_subj(subj)
    rec_b = client.for_key(krm).call("MEMORY", "USAGE", krm, "SAMPLES", 0)
    idx_b = client.for_key(ksm).call("MEMORY", "USAGE", ksm, "SAMPLES", 0)
    for i in range(9):
        st.insert(rec(subj, srv), srv)
    idx10 = client.for_key(ksm).call("MEMORY", "USAGE", ksm, "SAMPLES", 0)
    print(f"    record value {len(encode(r))} B -> key {rec_b} B; subject index with 1 member {idx_b} B, "
          f"with 10 members {idx10} B (+{(idx10 - idx_b) / 9:.0f} B per member)")

    n = st.cleanup()
    print(f"cleanup: deleted {n} keys under {PREFIX}:*")
    check("no key left under the prefix", not st.all_keys())


def cluster_only(client):
    SECTION[0] = "cluster"
    print("== cluster-specific checks")
    st = Store(client)
    srv = st.server_ms()
    r = rec("slot-subject", srv, resource="shared")
    st.insert(r, srv, rate=5, window=60_000)
    v = os.urandom(32)
    tid = st.put_ticket(r["id"], v, srv, srv + 60_000)
    st.acquire(r["id"], None, srv, srv + 60_000, per_session=3)
    subject_keys = [st.k_rec(r["id"]), st.k_subj(r["subject"]), st.k_rate(r["subject"]), st.k_ticket(tid)]
    slots = {client.for_key(k).call("CLUSTER", "KEYSLOT", k) for k in subject_keys}
    check("a subject's record, index, creation log and ticket share one slot (server's CLUSTER KEYSLOT)", len(slots) == 1, str(slots))
    check("the prototype's CRC16 agrees with the server", slots == {key_slot(subject_keys[0])})
    a, b = None, None
    for i in range(100):
        cand = f"{PREFIX}:probe:{{{i:04x}}}"
        if a is None:
            a = cand
        elif key_slot(cand) != key_slot(a) and client.for_key(cand) is client.for_key(a):
            b = cand
            break
    node = client.for_key(a)
    try:
        node.call("EVAL", b"#!lua\nreturn redis.call('GET', KEYS[1]) or redis.call('GET', ARGV[1])", 1, a, b)
        check("#!lua: an undeclared key of another slot (same node) is refused", False)
    except ReplyError as e:
        check("#!lua: an undeclared key of another slot (same node) is refused", "do not hash to the same slot" in str(e), str(e)[:60])
    try:
        r2 = node.call("EVAL", b"return redis.call('GET', KEYS[1]) or redis.call('GET', ARGV[1]) or 'allowed'", 1, a, b)
        check("plain EVAL: the same access is allowed silently", r2 == b"allowed")
    except ReplyError as e:
        check("plain EVAL: the same access is allowed silently", False, str(e))
    try:
        node.call("EVAL", b"#!lua\nreturn 1", 2, a, b)
        check("declared keys of two slots -> CROSSSLOT", False)
    except ReplyError as e:
        check("declared keys of two slots -> CROSSSLOT", str(e).startswith("CROSSSLOT"), str(e)[:40])
    same = f"{PREFIX}:other:{{{r['id'][:2].hex()}}}:x"
    out = client.for_key(same).call("EVAL", b"#!lua\nredis.call('SET', ARGV[1], 'v', 'PX', 60000) return redis.call('GET', ARGV[1])", 1, st.k_rec(r["id"]), same)
    check("#!lua: an undeclared key of the SAME slot is allowed (revoke_members relies on it)", out == b"v")
    n = st.cleanup()
    print(f"cleanup: deleted {n} keys")


def oom_checks():
    SECTION[0] = "oom"
    try:
        Conn(OOM_PORT).close()
        print(f"port {OOM_PORT} in use: OOM checks skipped")
        FAILED.append("[oom] port in use")
        return
    except OSError:
        pass
    print(f"== out of memory: a throwaway server on {OOM_PORT} (maxmemory 3mb, noeviction)")
    d = os.path.join(RUN_DIR, "oom")
    os.makedirs(d, exist_ok=True)
    subprocess.run(["redis-server", "--port", str(OOM_PORT), "--bind", HOST, "--daemonize", "yes",
                    "--pidfile", f"{d}/redis.pid", "--save", "", "--appendonly", "no", "--dir", d,
                    "--maxmemory", "3mb", "--maxmemory-policy", "noeviction", "--logfile", f"{d}/log"], check=True)
    try:
        for _ in range(50):
            try:
                c = Standalone(OOM_PORT)
                break
            except OSError:
                time.sleep(0.1)
        st = Store(c)
        srv = st.server_ms()
        s, s2 = rec("oom", srv), rec("oom", srv)
        st.insert(s, srv)
        st.insert(s2, srv)
        v = os.urandom(32)
        tid = st.put_ticket(s["id"], v, srv, srv + 600_000)
        big = b"x" * 1000
        i = 0
        while True:
            try:
                c.c.call("SET", f"{PREFIX}:fill:{i}", big)
                i += 1
            except ReplyError as e:
                assert str(e).startswith("OOM"), e
                break
        print(f"    filled with {i} keys until OOM")
        try:
            st.insert(rec("oom", srv), srv)
            check("insert (#!lua, no allow-oom) is refused when full (fail closed)", False)
        except ReplyError as e:
            check("insert (#!lua, no allow-oom) is refused when full (fail closed)", str(e).startswith("OOM"), str(e)[:40])
        try:
            st.cas(dict(s, version=2, data=b"y"), 1, srv)
            check("a touch (cas) is refused when full", False)
        except ReplyError as e:
            check("a touch (cas) is refused when full", str(e).startswith("OOM"))
        check("load (no-writes) still works", st.load(s["id"])[0] == encode(s))
        check("revoke by id (cas registered with allow-oom) works when full", st.cas(tombstone(s, srv, 1), 1, srv) == "OK")
        check("revoke_subject (allow-oom) works when full", st.revoke_subject("oom", srv)[0] == 1 and st.header(s2["id"])["reason"] == 2)
        check("take_ticket (allow-oom) works when full", st.take(tid, v, srv)[0] == "TAKEN")
        try:
            c.c.call("EVAL", b"#!lua\nreturn redis.call('DEL', KEYS[1])", 1, f"{PREFIX}:fill:0")
            check("a #!lua script without allow-oom is refused even if it only deletes", False)
        except ReplyError as e:
            check("a #!lua script without allow-oom is refused even if it only deletes", str(e).startswith("OOM"))
        c.close()
    finally:
        with open(f"{d}/redis.pid") as f:
            pid = int(f.read().strip())
        os.kill(pid, 15)


def start_cluster():
    for p in CLUSTER_PORTS:
        try:
            Conn(p).close()
            raise SystemExit(f"port {p} is already in use: refusing to touch another process's server")
        except OSError:
            pass
    for p in CLUSTER_PORTS:
        d = os.path.join(RUN_DIR, str(p))
        os.makedirs(d, exist_ok=True)
        subprocess.run(["redis-server", "--port", str(p), "--bind", HOST, "--cluster-enabled", "yes",
                        "--cluster-config-file", f"nodes-{p}.conf", "--daemonize", "yes",
                        "--pidfile", f"{d}/redis.pid", "--save", "", "--appendonly", "no",
                        "--dir", d, "--logfile", f"{d}/log"], check=True)
    time.sleep(0.5)
    subprocess.run(["redis-cli", "--cluster", "create", *[f"{HOST}:{p}" for p in CLUSTER_PORTS],
                    "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
    t0 = time.time()
    while time.time() - t0 < 20:
        if all(b"cluster_state:ok" in Conn(p).call("CLUSTER", "INFO") for p in CLUSTER_PORTS):
            print(f"cluster_state:ok on {CLUSTER_PORTS} after {time.time() - t0:.1f}s")
            return
        time.sleep(0.2)
    raise SystemExit("cluster did not reach cluster_state:ok")


def stop_cluster():
    for p in CLUSTER_PORTS:
        pidfile = os.path.join(RUN_DIR, str(p), "redis.pid")
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read().strip())
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
    time.sleep(0.5)
    print("cluster nodes stopped by pidfile")


def helpers_consistent():
    SECTION[0] = "scripts"
    import re
    seen = {}
    bad = []
    for name, src in SCRIPTS.items():
        if name == "cas_oom":
            continue
        for block in re.split(rb"\n\n", src):
            mm = re.search(rb"^(?:--[^\n]*\n)*local function (\w+)\(", block)
            if mm:
                fn = mm.group(1)
                if fn in seen and seen[fn][1] != block:
                    bad.append((fn.decode(), seen[fn][0], name))
                seen.setdefault(fn, (name, block))
    check("helper functions copied into several scripts are byte-identical", not bad, str(bad[:3]))
    first = {n: src.split(b"\n", 1)[0].decode() for n, src in SCRIPTS.items()}
    check("every script starts with a #!lua line", all(f.startswith("#!lua") for f in first.values()))
    print("    shebangs: " + ", ".join(f"{n}: '{f}'" for n, f in sorted(first.items())))


def main():
    os.makedirs(RUN_DIR, exist_ok=True)
    helpers_consistent()
    sa = Standalone(STANDALONE_PORT)
    try:
        run_suite(sa, "standalone")
    finally:
        Store(sa).cleanup()
        sa.close()
    oom_checks()
    try:
        start_cluster()
        cl = Cluster(CLUSTER_PORTS)
        run_suite(cl, "cluster")
        cluster_only(cl)
        Store(cl).cleanup()
        cl.close()
    finally:
        stop_cluster()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    print(f"\n{len(PASSED)} checks passed, {len(FAILED)} failed")
    for f in FAILED:
        print(f"  FAILED: {f}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
