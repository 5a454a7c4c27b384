#!lua flags=no-writes
-- list_subject: every record of the subject index (live, expired, tombstones; a member whose
-- record is gone is skipped), with the store time, in one atomic read of the subject's slot.
--   KEYS[1]  <prefix>:u:{tag}:<subject>;  ARGV  prefix, test clock offset ms
-- Returns {store_time_ms, record...}.
local _, server = judged(0, 0)
local out = {server + tonumber(ARGV[2])}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local s = redis.call('GET', record_key(ARGV[1], member_id(m)))
  if s then out[#out + 1] = s end
end
return out
