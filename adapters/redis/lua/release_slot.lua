#!lua flags=allow-oom
-- release_slot (one atomic script, the slot's slot): deletes the slot and its entry in the
-- session's slot index. The adapter then removes a per-resource reservation (slot first, then
-- reservation: a crash between them over-counts until the reservation's score passes).
--   KEYS[1]  <prefix>:l:{tag}:<slot id hex>;  ARGV  prefix
-- Returns {0} if absent, {1, slot bytes} if it existed.
local slot = redis.call('GET', KEYS[1])
if not slot then return {0} end
redis.call('DEL', KEYS[1])
if #slot >= 38 then
  local session_id = slot:sub(21, 38)
  redis.call('ZREM', ARGV[1] .. ':ls:{' .. tag_of(session_id) .. '}:' .. hex(session_id), slot:sub(3, 20))
end
return {1, slot}
