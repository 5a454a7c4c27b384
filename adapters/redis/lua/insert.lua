#!lua
-- insert_session, the subject step (one atomic script; also check_limits' dry run). Every key
-- it touches carries the subject's hash tag: the record, the subject index, the creation log,
-- and the members' records it reads, tombstones, evicts or moves aside (computed here from the
-- index members: same slot, allowed in a #!lua script).
--   KEYS[1]  <prefix>:s:{tag}:<id hex>   the record (STRING, PXAT expires_at)
--   KEYS[2]  <prefix>:u:{tag}:<subject>  subject index: ZSET seq||id -> created_at
--   KEYS[3]  <prefix>:r:{tag}:<subject>  creation log: ZSET id -> judged creation time
--   KEYS[4]  <prefix>:g:{global}          optional, single server only: the global index, so
--            that the global step is in this script too (on a Cluster it is another slot, and
--            the adapter reserves it before this script runs)
--   KEYS[5]  <prefix>:m:{rtag}:<resource> with KEYS[4], for a session with a resource: its
--            resource's members, registered here too
--   ARGV     prefix, record bytes ('' for a dry run), caller now ms, test offset ms,
--            cap max (0: none), 'evict' | 'reject', rate max (0: none), rate window ms,
--            'dry' | 'write', with KEYS[4]: global cap max (0: none), or 'off': the store
--            keeps no global index (KEYS[4] is then not touched; the marker
--            KEYS[4]..':unindexed', same slot, is kept alive until the session's deadline)
-- Returns {'INSERTED', evicted ids (oldest first)...} | {'REPLAY'} | {'ALREADY_EXISTS'} |
--   {'INVALID_WRITE', why} | {'RATE_LIMITED', retry_after_ms} | {'SUBJECT_CAP'} |
--   {'GLOBAL_CAP'}.
-- The shard tag (a SHA-256 of the subject) is checked by the adapter before it calls: Lua has
-- no SHA-256. Order: every read and check first, then the writes (an error does not roll back).

local prefix, rec = ARGV[1], ARGV[2]
local cap_max, evict = tonumber(ARGV[5]), ARGV[6] == 'evict'
local rate_max, window = tonumber(ARGV[7]), tonumber(ARGV[8])
local dry = ARGV[9] == 'dry'

local h
if not dry then
  h = header(rec)
  if not h or h.state ~= 0 or KEYS[1] ~= record_key(prefix, h.id) then
    return {'INVALID_WRITE', 'record'}
  end
  -- 1. The id is present: a replay of this very record (retry after a lost reply) or a clash.
  local stored = redis.call('GET', KEYS[1])
  if stored then
    if stored == rec then return {'REPLAY'} end
    return {'ALREADY_EXISTS'}
  end
end
local at, server = judged(ARGV[3], ARGV[4])

-- 1b. The global step, when it is here (KEYS[4]): a full global cap answers before a rate
--     limit, as when the adapter reserves beforehand.
local global, unindexed = KEYS[4], nil
if ARGV[10] == 'off' then global, unindexed = nil, KEYS[4] .. ':unindexed' end
if global and not dry and index_full(global, h.id, tonumber(ARGV[10]), at) then
  return {'GLOBAL_CAP'}
end

-- 2. Creation rate over (at - window, at] (later entries count too: fail closed). Retry once
--    the (count - max + 1)-th oldest entry has left the window.
if rate_max > 0 then
  local n = redis.call('ZCOUNT', KEYS[3], '(' .. num(at - window), '+inf')
  if n >= rate_max then
    local e = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. num(at - window), '+inf',
                         'WITHSCORES', 'LIMIT', n - rate_max, 1)
    return {'RATE_LIMITED', math.max(0, tonumber(e[2]) + window - at)}
  end
end

-- 3. Subject cap. ZRANGE order = (created_at, insertion sequence) = eviction order.
local lives, expired, gone, corrupt = {}, {}, {}, {}
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
if cap_max > 0 then
  for _, m in ipairs(members) do
    local id = member_id(m)
    local k = record_key(prefix, id)
    local s = redis.call('GET', k)
    local mh = header(s)
    if not s then
      gone[#gone + 1] = m
    elseif not mh or mh.id ~= id then
      corrupt[#corrupt + 1] = {m = m, k = k, id = id}
    elseif mh.state == 0 then
      if due(mh, at) then
        expired[#expired + 1] = {m = m, k = k, h = mh}
      else
        lives[#lives + 1] = {m = m, k = k, h = mh, id = id}
      end
    end
  end
end
local excess = 0
if cap_max > 0 then excess = #lives + 1 - cap_max end
if excess > 0 and not evict then return {'SUBJECT_CAP'} end
local evicted = {}
for i = 1, excess do evicted[i] = lives[i].id end
if dry then
  table.insert(evicted, 1, 'INSERTED')
  return evicted
end

-- Writes: members found due get their Expired tombstone (6), the oldest live are evicted (5),
-- undecodable members are moved aside, vanished ones leave the index.
for _, e in ipairs(expired) do tombstone(e.k, e.h, 6, at) end
for i = 1, excess do tombstone(lives[i].k, lives[i].h, 5, at) end
for _, c in ipairs(corrupt) do
  quarantine(prefix, c.k, c.id)
  redis.call('ZREM', KEYS[2], c.m)
end
for _, m in ipairs(gone) do redis.call('ZREM', KEYS[2], m) end
-- The insertion sequence among members created in the same millisecond.
local seq = 0
local same = redis.call('ZRANGEBYSCORE', KEYS[2], num(h.created_at), num(h.created_at))
if #same > 0 then seq = struct.unpack('>I4', same[#same]) + 1 end
if global then index_add(global, h.id, h.deadline, server) end
-- Without the index: the marker outlives this session (a store opened with the index rebuilds
-- it while the marker lives).
if unindexed and not redis.call('SET', unindexed, '1', 'NX', 'PXAT', num(h.deadline)) then
  redis.call('PEXPIREAT', unindexed, num(h.deadline), 'GT')
end
if KEYS[5] then index_add(KEYS[5], h.id, h.deadline, server) end
redis.call('SET', KEYS[1], rec, 'PXAT', num(h.expires_at))
redis.call('ZADD', KEYS[2], num(h.created_at), struct.pack('>I4', seq) .. h.id)
ttl_at_least(KEYS[2], h.deadline)
if rate_max > 0 then
  redis.call('ZADD', KEYS[3], num(at), h.id)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(at - window))
  ttl_at_least(KEYS[3], at + window)
end
table.insert(evicted, 1, 'INSERTED')
return evicted
