#!lua flags=no-writes
-- get_many: the values of KEYS (session records of one slot on a Cluster; any keys on a
-- standalone server), and the store time, in one atomic read.
--   ARGV[1] test clock offset ms
-- Returns {store_time_ms, value or false per key...}.
local _, server = judged(0, 0)
local out = {server + tonumber(ARGV[1])}
for i, k in ipairs(KEYS) do out[i + 1] = redis.call('GET', k) end
return out
