#!lua flags=no-writes
-- index_snapshot: the members of a deadline-scored index (resource membership, the global
-- index) whose deadline has not passed on the server's own clock (older entries' records are
-- gone by native expiry). For revoke_resource this read IS the linearization point: every
-- session whose insert returned before it was registered before its record existed.
--   KEYS[1]  the index;  ARGV[1] test clock offset ms
-- Returns {store_time_ms, members...}.
local _, server = judged(0, 0)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(server), '+inf')
table.insert(members, 1, server + tonumber(ARGV[1])) -- no unpack(): it fails at ~8000 values
return members
