#!lua
-- heartbeat_slot (one atomic script, the slot's = its session's slot): if the slot is live and
-- its session is live, move its expiry to at + ttl (record bytes, PXAT, the session's slot
-- index); if its session is not live, delete it.
--   KEYS[1]  <prefix>:l:{tag}:<slot id hex>
--   ARGV     ttl ms, caller now ms, test offset ms, prefix
-- Returns {'EXTENDED'} | {'MISSING'} | {'SESSION_NOT_LIVE'} | {'CORRUPT'}.
local ttl, prefix = tonumber(ARGV[1]), ARGV[4]
local slot = redis.call('GET', KEYS[1])
if not slot then return {'MISSING'} end
if #slot < 55 or slot:byte(2) ~= 76 then return {'CORRUPT'} end
local expires_at = u64(slot, #slot - 8)
if not expires_at then return {'CORRUPT'} end
local slot_id, session_id = slot:sub(3, 20), slot:sub(21, 38)
local slots_key = prefix .. ':ls:{' .. tag_of(session_id) .. '}:' .. hex(session_id)
local at = judged(ARGV[2], ARGV[3])
if at >= expires_at then return {'MISSING'} end
local h = header(redis.call('GET', record_key(prefix, session_id)))
if not h or h.id ~= session_id or not live(h, at) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', slots_key, slot_id)
  return {'SESSION_NOT_LIVE'}
end
local exp = at + ttl
redis.call('SET', KEYS[1], slot:sub(1, #slot - 8) .. p64(exp), 'PXAT', num(exp))
redis.call('ZADD', slots_key, num(exp), slot_id)
ttl_at_least(slots_key, exp)
return {'EXTENDED'}
