-- prelude.lua: helpers shared by every script. scripts.rs prepends this text (after each
-- script's `#!lua` line) to every script body, so no helper is duplicated in lua/*.lua.
-- __RETENTION_MS__ is replaced by record::TOMBSTONE_RETENTION in ms when the scripts are built.

local RETENTION = __RETENTION_MS__

-- An exact decimal for a number below 2^53 ('..' would print 1.7957077413001e+15).
local function num(n) return string.format('%.0f', n) end
-- One format call for the whole string (a gsub calling format per byte took 3.5 µs for an id).
-- For ids and tags only: s:byte(1, -1) puts every byte on Lua's stack.
local function hex(s) return string.format(string.rep('%02x', #s), s:byte(1, -1)) end

-- Little-endian u64 at a 0-based offset; nil past the end or at/above 2^53 (a Lua number is a
-- double: such a field is undecodable here, fail closed).
local function u64(s, off)
  if #s < off + 8 or s:byte(off + 8) ~= 0 or s:byte(off + 7) >= 32 then return nil end
  return (struct.unpack('<I8', s, off + 1))
end
local function p64(n) return struct.pack('<I8', n) end

-- The fixed-offset header of a session record (engine codec, format 2, 3 or 4; see
-- `codec::layout`), or nil if the bytes are not one:
--  0 format | 1 'S' | 2 state | 3 reason | 4 revoked_at | 12 version | 20 expires_at |
--  28 absolute_deadline | 36 created_at | 44 id[18] | 62 u32 len + subject | flag (+ u32 len +
--  resource) | (format ≥ 3) u32 len + kind | last_seen (8 bytes; format 4: a varint) | the
--  rest of the record. identity = [28 .. end of kind].
-- The five u64 fields are read by one unpack (five u64() calls cost 0.75 µs, one unpack 0.12):
-- an unpacked value is exact below 2^53 and rounds to at least 2^53 above, so `< 2^53` is
-- u64()'s check.
local function header(s)
  if type(s) ~= 'string' or #s < 67 then return nil end
  local format, kind, state, reason = s:byte(1, 4)
  if (format < 2 or format > 4) or kind ~= 83 or state > 1 then return nil end
  local revoked_at, version, expires_at, deadline, created_at = struct.unpack('<I8I8I8I8I8', s, 5)
  local max = 9007199254740992
  if revoked_at >= max or version >= max or expires_at >= max or deadline >= max
     or created_at >= max then
    return nil
  end
  local h = {state = state, reason = reason, revoked_at = revoked_at, version = version,
             expires_at = expires_at, deadline = deadline, created_at = created_at,
             id = s:sub(45, 62)}
  local slen = struct.unpack('<I4', s, 63)
  local p = 67 + slen -- 1-based position of the resource flag
  if slen < 1 or slen > 1024 or p > #s then return nil end
  h.subject = s:sub(67, p - 1)
  local last = p
  if s:byte(p) == 1 then
    if p + 4 > #s then return nil end
    local rlen = struct.unpack('<I4', s, p + 1)
    last = p + 4 + rlen
    if rlen < 1 or rlen > 1024 or last > #s then return nil end
    h.resource = s:sub(p + 5, last)
  elseif s:byte(p) ~= 0 then
    return nil
  end
  if format >= 3 then
    if last + 4 > #s then return nil end
    local klen = struct.unpack('<I4', s, last + 1)
    if klen > 256 or last + 4 + klen > #s then return nil end
    last = last + 4 + klen
  end
  h.identity = s:sub(29, last)
  -- 1-based position of what follows last_seen (a varint in format 4: its last byte < 128).
  local rest = last + 9
  if format == 4 then
    rest = last + 1
    while (s:byte(rest) or 0) >= 128 do rest = rest + 1 end
    rest = rest + 1
  end
  if rest > #s + 1 then return nil end
  h.rest_at = rest
  return h
end

local function due(h, at) return at >= math.min(h.expires_at, h.deadline) end
local function live(h, at) return h.state == 0 and not due(h, at) end

-- at = max(caller now, server TIME + test offset), and the server's own clock (what native
-- expiry uses: only entries whose deadline is before it are surely gone).
local function judged(now, offset)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return math.max(tonumber(now), server + tonumber(offset)), server
end

local function tag_of(id) return hex(id:sub(1, 2)) end
local function record_key(prefix, id) return prefix .. ':s:{' .. tag_of(id) .. '}:' .. hex(id) end
local function quarantine_key(prefix, id) return prefix .. ':x:{' .. tag_of(id) .. '}:' .. hex(id) end

-- Subject-index members are a 4-byte big-endian sequence (insertion order among sessions
-- created in the same millisecond) followed by the 18-byte id; the score is created_at.
local function member_id(m) return m:sub(5, 22) end

-- Never leaves a key without a TTL: NX sets one on a key that has none, GT only extends.
local function ttl_at_least(key, t)
  if redis.call('PEXPIREAT', key, num(t), 'NX') == 0 then
    redis.call('PEXPIREAT', key, num(t), 'GT')
  end
end

-- Deadline-scored indexes (the global index, a resource's members, a resource's slot
-- reservations; docs/adapters/redis.md, Atomicity). Full: `member` is not in, and `cap` (0:
-- none) entries are live at `at`.
local function index_full(key, member, cap, at)
  if cap == 0 or redis.call('ZSCORE', key, member) then return false end
  return redis.call('ZCOUNT', key, '(' .. num(at), '+inf') >= cap
end

-- Adds `member` (one already in keeps the later score) after pruning the entries whose
-- deadline passed on the server's own clock (their records are gone by native expiry), and
-- keeps the key's TTL no earlier than its latest deadline.
local function index_add(key, member, score, server)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(server))
  redis.call('ZADD', key, 'GT', num(score), member)
  ttl_at_least(key, score)
end

-- The tombstone, in place: bytes 2..28 (state 1, reason, revoked_at, version + 1, expires_at
-- lowered to at most at + RETENTION), and the key's PXAT follows the new expires_at. SETRANGE
-- keeps the TTL; only a lower deadline is written (never later than the record's own).
local function tombstone(key, h, reason, at)
  local exp = math.min(h.expires_at, at + RETENTION)
  redis.call('SETRANGE', key, 2, string.char(1, reason) .. p64(at) .. p64(h.version + 1) .. p64(exp))
  if exp < h.expires_at then redis.call('PEXPIREAT', key, num(exp)) end
end

-- Moves undecodable bytes aside (same slot, TTL kept by RENAME), so one corrupt record never
-- blocks a group operation and can never validate again.
local function quarantine(prefix, key, id)
  redis.call('RENAME', key, quarantine_key(prefix, id))
end
