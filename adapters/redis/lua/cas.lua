#!lua
-- compare_and_swap (one atomic script, the record's slot): check_swap's rules in its order.
-- absent -> NOT_FOUND; stored tombstone -> NOT_FOUND (whatever the version); version differs ->
-- CONFLICT; stored record due at `at` and new is not a tombstone -> NOT_FOUND; identity bytes
-- (codec::identity_range) differ, or version not increased -> INVALID_WRITE; else write, with
-- PXAT at the new expires_at.
--   KEYS[1]  <prefix>:s:{tag}:<id hex>
--   ARGV     new record bytes, expected version, caller now ms, test offset ms
-- Returns {'OK'} (a security write) | {'OK', 'ROUTINE'} (a touch) | {'NOT_FOUND'} | {'CONFLICT'} | {'INVALID_WRITE', why} | {'CORRUPT'}.
-- The adapter registers this text twice: as is (touches, rotations: refused when Redis is out of
-- memory, fail closed) and with its first line replaced by '#!lua flags=allow-oom' for writes
-- whose new record is a tombstone (revocation by id must work on a full server).

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
-- A touch (only version, expires_at and last_seen move) is a routine write: the adapter sends
-- no WAIT after it (store::WriteClass::of_swap, on the bytes).
local routine = cur:sub(1, 12) == new:sub(1, 12)
  and cur:sub(c.rest_at) == new:sub(n.rest_at)
-- Write (the subject index keeps tombstones until their record is gone: listings show them).
redis.call('SET', KEYS[1], new, 'PXAT', num(n.expires_at))
if routine then return {'OK', 'ROUTINE'} end
return {'OK'}
