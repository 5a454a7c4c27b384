#!lua
-- index_reserve: one entry in a deadline-scored index that lives in ANOTHER slot than the
-- session (cross-slot protocols, see the README). Three uses:
--   * resource membership   <prefix>:m:{rtag}:<resource>  member = session id, score =
--     absolute_deadline, cap 0. insert_session runs it BEFORE the record exists, so a
--     revoke_resource snapshot taken after any insert returned contains that session.
--   * global cap            <prefix>:g:{global}           member = session id, score =
--     absolute_deadline, cap = global max (an upper bound: entries of revoked or idle-expired
--     sessions count until their absolute deadline).
--   * per-resource slot cap <prefix>:lr:{rtag}:<resource> member = slot id || session id,
--     score = slot expires_at, cap = per_resource.
--   KEYS[1]  the index
--   ARGV     member, score (ms), cap (0: none), caller now ms, test offset ms, 'members'|''
-- Returns {'OK'} | {'FULL'} | {'FULL', members...} (with 'members': the entries that count, so
-- the adapter can check their sessions and prune dead ones). Idempotent: a member already
-- present is OK (a retried insert) and keeps the later score.

local function num(n) return string.format('%.0f', n) end
local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end

-- at = max(caller now, server TIME + test offset); also returns the server's own clock (what
-- native expiry uses: only entries older than it are surely gone).
local function judged(now, offset)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return math.max(tonumber(now), server + tonumber(offset)), server
end

-- Never leaves a key without a TTL: NX sets one on a key that has none, GT only extends.
local function ttl_at_least(key, t)
  if redis.call('PEXPIREAT', key, num(t), 'NX') == 0 then
    redis.call('PEXPIREAT', key, num(t), 'GT')
  end
end

local member, score, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local at, server = judged(ARGV[4], ARGV[5])
local present = redis.call('ZSCORE', KEYS[1], member)
if not present and cap > 0 then
  -- entries that count: deadline after `at`
  local n = redis.call('ZCOUNT', KEYS[1], '(' .. num(at), '+inf')
  if n >= cap then
    if ARGV[6] == 'members' then
      local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. num(at), '+inf')
      table.insert(members, 1, 'FULL')
      return members
    end
    return {'FULL'}
  end
end
-- Writes: prune entries whose deadline passed on the server's own clock (their records are
-- gone by native expiry), add, keep a TTL no earlier than the latest deadline.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(server))
redis.call('ZADD', KEYS[1], 'GT', num(score), member)
ttl_at_least(KEYS[1], score)
return {'OK'}
