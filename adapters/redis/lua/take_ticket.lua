#!lua flags=allow-oom
-- take_ticket (one atomic script, the ticket's slot). At most one caller gets TAKEN: the
-- script runs alone and deletes the ticket before returning it.
--   KEYS[1]  <prefix>:t:{tag}:<ticket id hex>
--   ARGV     verifier (32 bytes), caller now ms, test offset ms
-- Returns {'TAKEN', ticket bytes} | {'EXPIRED'} (deleted) | {'MISSING'} (absent or verifier
-- mismatch: the ticket stays) | {'CORRUPT'}. Lua string equality is not constant-time; it
-- compares a verifier (a hash of the secret), never the secret. allow-oom: DEL frees memory.
local t = redis.call('GET', KEYS[1])
if not t then return {'MISSING'} end
if #t ~= 86 or t:byte(2) ~= 84 then return {'CORRUPT'} end
if t:sub(39, 70) ~= ARGV[1] then return {'MISSING'} end
local expires_at = u64(t, 78)
if not expires_at then return {'CORRUPT'} end
local at = judged(ARGV[2], ARGV[3])
redis.call('DEL', KEYS[1])
if at < expires_at then return {'TAKEN', t} end
return {'EXPIRED'}
