#!lua flags=allow-oom
-- reap_index: Redis reclaims records itself (PXAT at the deadline), so reaping only cleans
-- index entries, in bounded batches: remove up to `limit` entries of a deadline-scored index
-- (the global index, a resource's membership or slot reservations) whose score is before the
-- server clock (their records are gone).
--   KEYS[1]  the index;  ARGV  limit
-- Returns the number removed.
local _, server = judged(0, 0)
local victims = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. num(server), 'LIMIT', 0, tonumber(ARGV[1]))
if #victims > 0 then redis.call('ZREM', KEYS[1], unpack(victims)) end
return #victims
