#!lua flags=allow-oom
-- revoke_subject (one atomic script, the subject's slot): writes the tombstone (reason 2) over
-- every member that is not one yet -- expired or not, whatever any clock says -- in place, and
-- returns how many were live at `at`. Every session of the subject is a member of its index
-- (insert adds it; only a vanished record's member is removed), so none can be missed.
--   KEYS[1]  <prefix>:u:{tag}:<subject>
--   ARGV     prefix, caller now ms, test offset ms
-- Returns {live_count, moved_aside_count}. allow-oom: a revocation must succeed on a full
-- server (it rewrites 26 bytes in place and removes index entries: it does not grow memory).

local prefix = ARGV[1]
local at = judged(ARGV[2], ARGV[3])
local todo, gone, corrupt, n = {}, {}, {}, 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local id = member_id(m)
  local k = record_key(prefix, id)
  local s = redis.call('GET', k)
  local h = header(s)
  if not s then
    gone[#gone + 1] = m
  elseif not h or h.id ~= id then
    corrupt[#corrupt + 1] = {m = m, k = k, id = id}
  elseif h.state == 0 then
    if not due(h, at) then n = n + 1 end
    todo[#todo + 1] = {k = k, h = h}
  end
end
-- Writes.
for _, t in ipairs(todo) do tombstone(t.k, t.h, 2, at) end
for _, c in ipairs(corrupt) do
  quarantine(prefix, c.k, c.id)
  redis.call('ZREM', KEYS[1], c.m)
end
for _, m in ipairs(gone) do redis.call('ZREM', KEYS[1], m) end
return {n, #corrupt}
