#!lua flags=allow-oom
-- revoke_members: the per-slot step of revoke_resource. All KEYS are session records of ONE
-- hash slot (the adapter groups the snapshot's ids by tag). Each record present and not yet a
-- tombstone (expired or not) gets its tombstone in place with `reason`; the live ones are
-- counted. Undecodable records are moved aside. Absent ids are skipped: an absent record may
-- be an insert that registered in the resource index and has not written its record yet.
--   KEYS     <prefix>:s:{tag}:<id hex> ... (one slot)
--   ARGV     prefix, caller now ms, test offset ms, reason code (3 = resource), ids (raw,
--            one per key, in KEYS order)
-- Returns the live count. Idempotent: a retry finds tombstones and writes nothing more.

local prefix, reason = ARGV[1], tonumber(ARGV[4])
local at = judged(ARGV[2], ARGV[3])
local todo, corrupt, n = {}, {}, 0
for i, k in ipairs(KEYS) do
  local id = ARGV[4 + i]
  local s = redis.call('GET', k)
  if s then
    local h = header(s)
    if not h or h.id ~= id then
      corrupt[#corrupt + 1] = {k = k, id = id}
    elseif h.state == 0 then
      if not due(h, at) then n = n + 1 end
      todo[#todo + 1] = {k = k, h = h}
    end
  end
end
-- Writes.
for _, t in ipairs(todo) do tombstone(t.k, t.h, reason, at) end
for _, c in ipairs(corrupt) do quarantine(prefix, c.k, c.id) end
return n
