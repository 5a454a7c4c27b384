#!lua
-- put_ticket (one atomic script, the ticket's slot = its session's): stores the ticket rebased
-- onto the judged time (created_at = at, expires_at = at + ttl), PXAT at its expires_at.
--   KEYS[1]  <prefix>:t:{tag}:<ticket id hex>
--   ARGV     ticket bytes (engine codec), ttl ms, caller created_at ms, test offset ms
-- Ticket bytes: 0 format | 1 'T' | 2 id[18] | 20 session[18] | 38 verifier[32] |
--   70 u64 created_at | 78 u64 expires_at (86 bytes; checked against the codec by a test).
-- Returns {'OK'} | {'ALREADY_EXISTS'} | {'INVALID_WRITE'}.
local t, ttl = ARGV[1], tonumber(ARGV[2])
if #t ~= 86 or t:byte(2) ~= 84 then return {'INVALID_WRITE'} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ALREADY_EXISTS'} end
local at = judged(ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], t:sub(1, 70) .. p64(at) .. p64(at + ttl), 'PXAT', num(at + ttl))
return {'OK'}
