#!lua flags=no-writes
-- load_session (one round trip): the record bytes (false if absent: never stored, or removed
-- by native expiry) and the store time, read in the same atomic step.
--   KEYS[1]  <prefix>:s:{tag}:<id hex>
--   ARGV[1]  test clock offset in ms (0 in production)
-- Returns {record or false, store_time_ms}.
local _, server = judged(0, 0)
return {redis.call('GET', KEYS[1]), server + tonumber(ARGV[1])}
