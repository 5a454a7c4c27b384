#!lua
-- index_reserve: one entry in a deadline-scored index in ANOTHER slot than the session (the
-- cross-slot protocols of docs/adapters/redis.md):
--   * global index          <prefix>:g:{global}            member = session id, score =
--     absolute_deadline, cap = global max or 0 (every session registers: listing and counting
--     the whole store walk it; the cap is an upper bound on a sharded store).
--   * resource membership   <prefix>:m:{rtag}:<resource>  member = session id, score =
--     absolute_deadline, cap 0. Registered BEFORE the record exists.
--   * per-resource slot cap <prefix>:lr:{rtag}:<resource> member = slot id || session id,
--     score = at + ttl (ARGV[2] = 'ttl:<ms>'), cap = per_resource.
--   KEYS[1]  the index
--   ARGV     member, score ms (or 'ttl:<ms>'), cap (0: none), caller now ms, test offset ms,
--            'members' | '' , 'dry' | 'extend' | '' ('extend': only move an existing member's
--            score later, ZADD XX GT -- a slot heartbeat, before the slot record itself)
-- Returns {'OK'} | {'FULL', counting members...}. Idempotent: a member already present is OK
-- (a retried insert) and keeps the later score.

local member, cap = ARGV[1], tonumber(ARGV[3])
local at, server = judged(ARGV[4], ARGV[5])
local score
if ARGV[2]:sub(1, 4) == 'ttl:' then score = at + tonumber(ARGV[2]:sub(5)) else score = tonumber(ARGV[2]) end
if ARGV[7] == 'extend' then
  if redis.call('ZADD', KEYS[1], 'XX', 'GT', num(score), member) >= 0 then ttl_at_least(KEYS[1], score) end
  return {'OK'}
end
if index_full(KEYS[1], member, cap, at) then
  local out = {'FULL'}
  if ARGV[6] == 'members' then
    out = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(at), '+inf')
    table.insert(out, 1, 'FULL')
  end
  return out
end
if ARGV[7] == 'dry' then return {'OK'} end
index_add(KEYS[1], member, score, server)
return {'OK'}
