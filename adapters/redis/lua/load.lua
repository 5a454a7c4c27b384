#!lua flags=no-writes
-- load_session (one round trip): the record bytes (nil if absent: never stored, reaped, or past
-- its PXAT deadline) and the store time, read in the same atomic step.
--   KEYS[1]  <prefix>:s:{<tag>}:<id hex>
--   ARGV[1]  test clock offset in ms (0 in production)
-- Returns {record or nil, store_time_ms}. no-writes: runs under OOM, on replicas with EVAL_RO,
-- and Redis refuses any write from it.
local t = redis.call('TIME')
local store_time = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
return {redis.call('GET', KEYS[1]), store_time}
