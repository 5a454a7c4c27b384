#!lua flags=allow-oom
-- reap_index: Redis reclaims records itself (PXAT at the deadline, tombstones keep theirs), so
-- reaping only cleans index entries, in bounded batches:
--   mode 'deadline': a deadline-scored index (resource membership, global cap, slot
--     reservations, per-session slots, creation log): remove up to `limit` entries whose score
--     is <= the server clock (their records are gone).
--   mode 'members': a subject index: visit up to `limit` members from rank `cursor`, remove
--     those whose record is gone or a tombstone.
--   KEYS[1]  the index;  ARGV  mode, limit, prefix, cursor
-- Undeclared keys: it reads/writes keys that are not in KEYS (computed here from index members
-- or from the record), all in the same hash slot as KEYS[1]. Redis allows that in a #!lua
-- script (checked on a Cluster; a key of another slot is an error); declaring them would take a
-- read round trip first and a re-check here.
-- Returns {removed, next cursor (0: done)}. Every index key also carries a TTL no earlier than
-- its latest deadline, so an index nobody reaps still disappears on its own.

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

local function record_key(prefix, id)
  return prefix .. ':s:{' .. hex(id:sub(1, 2)) .. '}:' .. hex(id)
end

local mode, limit, prefix, cursor = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4] or '0')
local t = redis.call('TIME')
local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local victims = {}
local next_cursor = 0
if mode == 'deadline' then
  victims = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(server), 'LIMIT', 0, limit)
  if #victims == limit then next_cursor = 1 end
else
  local members = redis.call('ZRANGE', KEYS[1], cursor, cursor + limit - 1)
  for _, m in ipairs(members) do
    local s = redis.call('GET', record_key(prefix, m))
    local h = header(s)
    if not s or (h and h.state ~= 0) then victims[#victims + 1] = m end
  end
  if #members == limit then next_cursor = cursor + limit - #victims end
end
-- Writes.
if #victims > 0 then redis.call('ZREM', KEYS[1], unpack(victims)) end
return {#victims, next_cursor}
