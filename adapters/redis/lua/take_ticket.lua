#!lua flags=allow-oom
-- take_ticket (one atomic script, the ticket's slot = its session's). At most one caller gets
-- TAKEN: the script runs alone and deletes the ticket before returning it.
--   KEYS[1]  <prefix>:t:{tag}:<ticket id hex>  STRING, PXAT expires_at
--   ARGV     verifier (32 bytes), caller now ms, test offset ms
-- Ticket bytes (prototype v2 layout): 0 format=2 | 1 'T' | 2 id[18] | 20 session[18] |
--   38 verifier[32] | 70 u64 created_at | 78 u64 expires_at  (86 bytes).
-- Returns {'TAKEN', ticket bytes} | {'EXPIRED'} (deleted) | {'MISSING'} (absent or verifier
-- mismatch: the ticket stays) | {'CORRUPT'}. Lua string equality is not constant-time; it
-- compares a verifier (a hash of the secret), not the secret. allow-oom: DEL frees memory.

-- Little-endian u64 at a 0-based offset; nil at or above 2^53 (a Lua number is a double).
local function u64(s, off)
  if s:byte(off + 8) ~= 0 or s:byte(off + 7) >= 32 then return nil end
  return (struct.unpack('<I8', s, off + 1))
end

-- at = max(caller now, server TIME + test offset); also returns the server's own clock (what
-- native expiry uses: only entries older than it are surely gone).
local function judged(now, offset)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return math.max(tonumber(now), server + tonumber(offset)), server
end

local t = redis.call('GET', KEYS[1])
if not t then return {'MISSING'} end
if #t ~= 86 or t:byte(1) ~= 2 or t:byte(2) ~= 84 then return {'CORRUPT'} end
if t:sub(39, 70) ~= ARGV[1] then return {'MISSING'} end
local expires_at = u64(t, 78)
if not expires_at then return {'CORRUPT'} end
local at = judged(ARGV[2], ARGV[3])
-- Write.
redis.call('DEL', KEYS[1])
if at < expires_at then return {'TAKEN', t} end
return {'EXPIRED'}
