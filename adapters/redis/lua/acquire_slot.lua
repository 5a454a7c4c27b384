#!lua
-- acquire_slot, the session step (one atomic script). The per-session cap is exact here; the
-- per-resource cap is a reservation in the resource's slot taken BEFORE this script
-- (index_reserve on <prefix>:lr:{rtag}:<resource>) and released if this script refuses.
--   KEYS[1]  <prefix>:s:{tag}:<session id hex>   the session record
--   KEYS[2]  <prefix>:l:{tag}:<slot id hex>      the slot (STRING, PXAT expires_at)
--   KEYS[3]  <prefix>:ls:{tag}:<session id hex>  the session's slots: ZSET slot id -> expires_at
--   ARGV     slot bytes (engine codec), ttl ms, per-session cap (0: none), caller now ms,
--            test offset ms
-- Slot bytes: 0 format | 1 'L' | 2 id[18] | 20 session[18] | resource | u64 acquired_at |
--   u64 expires_at (the last 16 bytes; rebased here onto the judged time).
-- Returns {'ACQUIRED'} | {'SESSION_NOT_LIVE'} | {'SESSION_CAP'} | {'ALREADY_EXISTS'} |
--   {'INVALID_WRITE'}.
local slot, ttl, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if #slot < 55 or slot:byte(2) ~= 76 then return {'INVALID_WRITE'} end
local slot_id, session_id = slot:sub(3, 20), slot:sub(21, 38)
local at, server = judged(ARGV[4], ARGV[5])
local h = header(redis.call('GET', KEYS[1]))
if not h or h.id ~= session_id or not live(h, at) then return {'SESSION_NOT_LIVE'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'ALREADY_EXISTS'} end
if cap > 0 then
  -- live slots: unexpired entries whose slot key still exists (released ones are removed)
  local n = redis.call('ZCOUNT', KEYS[3], '(' .. num(at), '+inf')
  if n >= cap then return {'SESSION_CAP'} end
end
-- Writes.
local exp = at + ttl
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(server))
redis.call('SET', KEYS[2], slot:sub(1, #slot - 16) .. p64(at) .. p64(exp), 'PXAT', num(exp))
redis.call('ZADD', KEYS[3], num(exp), slot_id)
ttl_at_least(KEYS[3], exp)
return {'ACQUIRED'}
