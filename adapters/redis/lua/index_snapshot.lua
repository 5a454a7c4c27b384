#!lua flags=no-writes
-- index_snapshot: the members of a deadline-scored index whose deadline has not passed on the
-- server's own clock (older entries' records are gone by native expiry). For revoke_resource
-- this read IS the linearization point: every session whose insert returned before it was
-- registered in the index before its record existed, so it is in this list.
--   KEYS[1]  <prefix>:m:{rtag}:<resource>
-- Returns {server_time_ms, members...}. no-writes: runs under OOM and never writes.
local t = redis.call('TIME')
local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', server), '+inf')
table.insert(members, 1, server) -- no unpack(): it fails beyond a few thousand values
return members
