#!lua
-- compare_and_swap (one atomic script, the record's slot). check_swap's rules in its order:
-- absent -> NOT_FOUND; stored tombstone -> NOT_FOUND (whatever the version); version differs ->
-- CONFLICT; stored record due at `at` and new is not a tombstone -> NOT_FOUND; identity bytes
-- [28 .. end of resource] differ, or version not increased -> INVALID_WRITE; else write.
--   KEYS[1]  <prefix>:s:{tag}:<id hex>
--   KEYS[2]  <prefix>:u:{tag}:<subject>  (a tombstone leaves the subject index)
--   ARGV     new record bytes, expected version, caller now ms, test offset ms, prefix
-- Returns {'OK'} | {'NOT_FOUND'} | {'CONFLICT'} | {'INVALID_WRITE', why} | {'CORRUPT'}.
-- The adapter registers this text twice: as is (touches, rotations: refused when Redis is out of
-- memory, fail closed) and with its first line replaced by '#!lua flags=allow-oom' for writes
-- whose new record is a tombstone (revoke by id must work on a full server).

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

local new, expected = ARGV[1], tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if not cur then return {'NOT_FOUND'} end
local c = header(cur)
if not c then return {'CORRUPT'} end
local at = judged(ARGV[3], ARGV[4])
if c.state ~= 0 then return {'NOT_FOUND'} end
if c.version ~= expected then return {'CONFLICT'} end
local n = header(new)
if not n then return {'INVALID_WRITE', 'record'} end
if due(c, at) and n.state ~= 1 then return {'NOT_FOUND'} end
if n.identity ~= c.identity then return {'INVALID_WRITE', 'identity'} end
if n.version <= c.version then return {'INVALID_WRITE', 'version'} end
if n.expires_at > n.deadline then return {'INVALID_WRITE', 'expires_at past absolute_deadline'} end
if KEYS[2] ~= ARGV[5] .. ':u:{' .. hex(n.id:sub(1, 2)) .. '}:' .. n.subject then
  return {'INVALID_WRITE', 'keys'}
end
-- Writes.
redis.call('SET', KEYS[1], new, 'PXAT', num(n.expires_at))
if n.state == 1 then redis.call('ZREM', KEYS[2], n.id) end
return {'OK'}
