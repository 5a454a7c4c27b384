#!lua
-- acquire_slot, the session-slot step (one atomic script). The per-session cap is exact here;
-- the per-resource cap is a reservation in the resource's slot taken BEFORE this script
-- (index_reserve on <prefix>:lr:{rtag}:<resource>) and released if this script refuses.
--   KEYS[1]  <prefix>:s:{tag}:<session id hex>   the session record
--   KEYS[2]  <prefix>:l:{tag}:<slot id hex>      the slot record (STRING, PXAT expires_at)
--   KEYS[3]  <prefix>:ls:{tag}:<session id hex>  per-session slot index: ZSET slot id -> expires_at
--   ARGV     slot bytes, per-session cap (0: none), caller now ms, test offset ms
-- Slot bytes (prototype v2 layout): 0 format=2 | 1 'L' | 2 id[18] | 20 session[18] | 38 flag
--   (+ u32 len + resource) | u64 acquired_at | u64 expires_at.
-- Returns {'ACQUIRED'} | {'SESSION_NOT_LIVE'} | {'SESSION_CAP'} | {'ALREADY_EXISTS'} |
--   {'INVALID_WRITE', why}.

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

-- Never leaves a key without a TTL: NX sets one on a key that has none, GT only extends.
local function ttl_at_least(key, t)
  if redis.call('PEXPIREAT', key, num(t), 'NX') == 0 then
    redis.call('PEXPIREAT', key, num(t), 'GT')
  end
end

local slot, cap = ARGV[1], tonumber(ARGV[2])
if #slot < 55 or slot:byte(1) ~= 2 or slot:byte(2) ~= 76 then return {'INVALID_WRITE', 'slot'} end
local slot_id, session_id = slot:sub(3, 20), slot:sub(21, 38)
local expires_at = u64(slot, #slot - 8)
if not expires_at then return {'INVALID_WRITE', 'slot'} end
local at, server = judged(ARGV[3], ARGV[4])
local h = header(redis.call('GET', KEYS[1]))
if not h or h.id ~= session_id or h.state ~= 0 or due(h, at) then return {'SESSION_NOT_LIVE'} end
if cap > 0 and redis.call('ZCOUNT', KEYS[3], '(' .. num(at), '+inf') >= cap then
  return {'SESSION_CAP'}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'ALREADY_EXISTS'} end
-- Writes.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(server))
redis.call('SET', KEYS[2], slot, 'PXAT', num(expires_at))
redis.call('ZADD', KEYS[3], num(expires_at), slot_id)
ttl_at_least(KEYS[3], expires_at)
return {'ACQUIRED'}
