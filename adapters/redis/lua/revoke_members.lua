#!lua flags=allow-oom
-- revoke_members: the per-slot step of revoke_resource (and of any revocation by a list of ids).
-- All KEYS are records of ONE hash slot (the adapter groups the snapshot's ids by slot). For each
-- record that is not a tombstone yet (expired or not) it writes the tombstone in place, with
-- `reason`, and removes it from its subject index (same slot: the subject's tag is the id's).
--   KEYS     <prefix>:s:{tag}:<id hex> ... (one slot)
--   ARGV     prefix, caller now ms, test offset ms, reason code (3 = resource)
-- Returns {live_count, ids now final (tombstones)...}: the adapter prunes those from the
-- resource index. Absent ids are NOT returned: an absent record may be an insert that has
-- registered in the resource index and not written its record yet.
-- Undeclared keys: it reads/writes keys that are not in KEYS (computed here from index members
-- or from the record), all in the same hash slot as KEYS[1]. Redis allows that in a #!lua
-- script (checked on a Cluster; a key of another slot is an error); declaring them would take a
-- read round trip first and a re-check here.
-- Idempotent: a retry finds tombstones and writes nothing more. allow-oom: see revoke_subject.

local function num(n) return string.format('%.0f', n) end
local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end

-- Little-endian u64 at a 0-based offset; nil at or above 2^53 (a Lua number is a double).
local function u64(s, off)
  if s:byte(off + 8) ~= 0 or s:byte(off + 7) >= 32 then return nil end
  return (struct.unpack('<I8', s, off + 1))
end

-- The v2 header of a session record, or nil if the bytes are not one:
--  0 format=2 | 1 'S' | 2 state | 3 reason | 4 revoked_at | 12 version | 20 expires_at |
--  28 absolute_deadline | 36 created_at | 44 id[18] | 62 u32 len + subject | flag (+ u32 len +
--  resource) | mutable fields. identity = bytes [28 .. end of resource].
local function header(s)
  if type(s) ~= 'string' or #s < 67 or s:byte(1) ~= 2 or s:byte(2) ~= 83 or s:byte(3) > 1 then
    return nil
  end
  local h = {state = s:byte(3), reason = s:byte(4), revoked_at = u64(s, 4), version = u64(s, 12),
             expires_at = u64(s, 20), deadline = u64(s, 28), created_at = u64(s, 36),
             id = s:sub(45, 62)}
  if not (h.revoked_at and h.version and h.expires_at and h.deadline and h.created_at) then
    return nil
  end
  local slen = struct.unpack('<I4', s, 63)
  local p = 67 + slen -- 1-based position of the resource flag
  if slen < 1 or slen > 256 or p > #s then return nil end
  h.subject = s:sub(67, p - 1)
  local last = p
  if s:byte(p) == 1 then
    if p + 4 > #s then return nil end
    local rlen = struct.unpack('<I4', s, p + 1)
    last = p + 4 + rlen
    if rlen < 1 or rlen > 256 or last > #s then return nil end
    h.resource = s:sub(p + 5, last)
  elseif s:byte(p) ~= 0 then
    return nil
  end
  h.identity = s:sub(29, last)
  return h
end

local function due(h, at) return at >= math.min(h.expires_at, h.deadline) end

-- at = max(caller now, server TIME + test offset); also returns the server's own clock (what
-- native expiry uses: only entries older than it are surely gone).
local function judged(now, offset)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return math.max(tonumber(now), server + tonumber(offset)), server
end

-- The tombstone, in place: bytes 2..20 (state 1, reason, revoked_at, version + 1). SETRANGE keeps
-- the key's TTL, i.e. the PXAT at the original deadline.
local function tombstone(key, s, reason, at)
  redis.call('SETRANGE', key, 2,
    string.char(1, reason) .. struct.pack('<I8', at) .. struct.pack('<I8', u64(s, 12) + 1))
end

local prefix, reason = ARGV[1], tonumber(ARGV[4])
local at = judged(ARGV[2], ARGV[3])
local todo, final, live = {}, {}, 0
for _, k in ipairs(KEYS) do
  local s = redis.call('GET', k)
  local h = header(s)
  if h then
    if h.state == 0 then
      if not due(h, at) then live = live + 1 end
      todo[#todo + 1] = {k = k, s = s, h = h}
    end
    final[#final + 1] = h.id
  end
end
-- Writes.
for _, t in ipairs(todo) do
  tombstone(t.k, t.s, reason, at)
  redis.call('ZREM', prefix .. ':u:{' .. hex(t.h.id:sub(1, 2)) .. '}:' .. t.h.subject, t.h.id)
end
return {live, unpack(final)}
