#!lua
-- insert_session, the subject-slot step (one atomic script). Every key it touches carries the
-- subject's hash tag {tag} (= the id's first 2 bytes): the record, the subject index, the
-- creation log, and the members' records it reads, tombstones or evicts.
--   KEYS[1]  <prefix>:s:{tag}:<id hex>   the record (STRING, PXAT expires_at)
--   KEYS[2]  <prefix>:u:{tag}:<subject>  subject index: ZSET id -> created_at (non-tombstones)
--   KEYS[3]  <prefix>:r:{tag}:<subject>  creation log: ZSET id -> judged creation time
--   ARGV     prefix, record bytes (codec v2), caller now ms, test offset ms,
--            cap max (0: none), 'evict' | 'reject', rate max (0: none), rate window ms
-- Returns {'INSERTED', evicted ids (raw, oldest first)...} | {'ALREADY_EXISTS'} |
--   {'INVALID_WRITE', why} | {'RATE_LIMITED', retry_after_ms} | {'SUBJECT_CAP'}.
-- The global cap and the resource registration are separate steps in other slots (see the
-- README): the adapter runs them BEFORE this script and undoes them if it refuses.
-- Undeclared keys: it reads/writes keys that are not in KEYS (computed here from index members
-- or from the record), all in the same hash slot as KEYS[1]. Redis allows that in a #!lua
-- script (checked on a Cluster; a key of another slot is an error); declaring them would take a
-- read round trip first and a re-check here.
-- Order: every read and check first, then the writes (a script error does not roll back).

local function num(n) return string.format('%.0f', n) end
local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end

-- Little-endian u64 at a 0-based offset; nil at or above 2^53 (a Lua number is a double).
local function u64(s, off)
  if s:byte(off + 8) ~= 0 or s:byte(off + 7) >= 32 then return nil end
  return (struct.unpack('<I8', s, off + 1))
end

-- The v2 header of a session record, or nil if the bytes are not one:
--  0 format=2 | 1 'S' | 2 state | 3 reason | 4 revoked_at | 12 version | 20 expires_at |
--  28 absolute_deadline | 36 created_at | 44 id[18] | 62 u32 len + subject | flag (+ u32 len +
--  resource) | mutable fields. identity = bytes [28 .. end of resource].
local function header(s)
  if type(s) ~= 'string' or #s < 67 or s:byte(1) ~= 2 or s:byte(2) ~= 83 or s:byte(3) > 1 then
    return nil
  end
  local h = {state = s:byte(3), reason = s:byte(4), revoked_at = u64(s, 4), version = u64(s, 12),
             expires_at = u64(s, 20), deadline = u64(s, 28), created_at = u64(s, 36),
             id = s:sub(45, 62)}
  if not (h.revoked_at and h.version and h.expires_at and h.deadline and h.created_at) then
    return nil
  end
  local slen = struct.unpack('<I4', s, 63)
  local p = 67 + slen -- 1-based position of the resource flag
  if slen < 1 or slen > 256 or p > #s then return nil end
  h.subject = s:sub(67, p - 1)
  local last = p
  if s:byte(p) == 1 then
    if p + 4 > #s then return nil end
    local rlen = struct.unpack('<I4', s, p + 1)
    last = p + 4 + rlen
    if rlen < 1 or rlen > 256 or last > #s then return nil end
    h.resource = s:sub(p + 5, last)
  elseif s:byte(p) ~= 0 then
    return nil
  end
  h.identity = s:sub(29, last)
  return h
end

local function due(h, at) return at >= math.min(h.expires_at, h.deadline) end

-- at = max(caller now, server TIME + test offset); also returns the server's own clock (what
-- native expiry uses: only entries older than it are surely gone).
local function judged(now, offset)
  local t = redis.call('TIME')
  local server = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return math.max(tonumber(now), server + tonumber(offset)), server
end

local function record_key(prefix, id)
  return prefix .. ':s:{' .. hex(id:sub(1, 2)) .. '}:' .. hex(id)
end

-- Never leaves a key without a TTL: NX sets one on a key that has none, GT only extends.
local function ttl_at_least(key, t)
  if redis.call('PEXPIREAT', key, num(t), 'NX') == 0 then
    redis.call('PEXPIREAT', key, num(t), 'GT')
  end
end

-- The tombstone, in place: bytes 2..20 (state 1, reason, revoked_at, version + 1). SETRANGE keeps
-- the key's TTL, i.e. the PXAT at the original deadline.
local function tombstone(key, s, reason, at)
  redis.call('SETRANGE', key, 2,
    string.char(1, reason) .. struct.pack('<I8', at) .. struct.pack('<I8', u64(s, 12) + 1))
end

local band, bor, bxor, bnot, rshift, ror, tobit = bit.band, bit.bor, bit.bxor, bit.bnot, bit.rshift, bit.ror, bit.tobit
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2}
-- The first two bytes of SHA-256(msg) as a number 0..65535 (pure Lua: Redis has no SHA-256).
-- Measured on the server's single thread: ~80 us for a 5-byte subject, ~210 us for 64 bytes,
-- ~510 us for 256 bytes. The real adapter should check the tag itself before calling (it is a
-- pure function of the record) and drop this; the key-binding check below stays.
local function sha256_tag(msg)
  local len = #msg
  msg = msg .. '\128' .. string.rep('\0', (55 - len) % 64) .. struct.pack('>I8', len * 8)
  local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
  local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local a, b, c, d = msg:byte(chunk + 4 * i, chunk + 4 * i + 3)
      w[i] = tobit(a * 16777216 + b * 65536 + c * 256 + d)
    end
    for i = 16, 63 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
    for i = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(h + S1 + ch + K[i + 1] + w[i])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      local t2 = tobit(S0 + maj)
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
    end
    h0, h1, h2, h3 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d)
    h4, h5, h6, h7 = tobit(h4 + e), tobit(h5 + f), tobit(h6 + g), tobit(h7 + h)
  end
  return rshift(h0, 16) -- first two bytes of the digest, big-endian
end

local prefix, rec = ARGV[1], ARGV[2]
local cap_max, evict = tonumber(ARGV[5]), ARGV[6] == 'evict'
local rate_max, window = tonumber(ARGV[7]), tonumber(ARGV[8])

local h = header(rec)
if prefix == '' or prefix:find('[{}]') then return {'INVALID_WRITE', 'prefix'} end
if not h or h.state ~= 0 or h.expires_at > h.deadline then return {'INVALID_WRITE', 'record'} end
local tag = hex(h.id:sub(1, 2))
if KEYS[1] ~= record_key(prefix, h.id) or KEYS[2] ~= prefix .. ':u:{' .. tag .. '}:' .. h.subject
   or KEYS[3] ~= prefix .. ':r:{' .. tag .. '}:' .. h.subject then
  return {'INVALID_WRITE', 'keys'}
end
local at, server = judged(ARGV[3], ARGV[4])

-- 1. The id is present: a replay of this very record (retry after a lost reply) or a clash.
local stored = redis.call('GET', KEYS[1])
if stored then
  if stored == rec then return {'INSERTED'} end
  return {'ALREADY_EXISTS'}
end

-- 2. The id carries its subject's shard tag (engine/src/ids.rs ShardTag::of).
if sha256_tag('leasehold/v1/shard\0' .. h.subject) ~= h.id:byte(1) * 256 + h.id:byte(2) then
  return {'INVALID_WRITE', 'shard tag'}
end

-- 3. Creation rate over (at - window, at] (later entries count too: fail closed). Retry once
--    the (count - max + 1)-th oldest entry has left the window.
if rate_max > 0 then
  local n = redis.call('ZCOUNT', KEYS[3], '(' .. num(at - window), '+inf')
  if n >= rate_max then
    local e = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. num(at - window), '+inf',
                         'WITHSCORES', 'LIMIT', n - rate_max, 1)
    return {'RATE_LIMITED', tonumber(e[2]) + window - at}
  end
end

-- 4. Subject cap: classify the members (ZRANGE order = (created_at, id bytes) = eviction order).
local live, expired, dead = {}, {}, {}
if cap_max > 0 then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local k = record_key(prefix, m)
    local s = redis.call('GET', k)
    local mh = header(s)
    if not s or (mh and mh.state ~= 0) then
      dead[#dead + 1] = m                      -- gone (native expiry) or a tombstone
    elseif not mh then
      -- undecodable: counted as live (fail closed), never rewritten here
      live[#live + 1] = {m = m}
    elseif due(mh, at) then
      expired[#expired + 1] = {m = m, k = k, s = s}
    else
      live[#live + 1] = {m = m, k = k, s = s}
    end
  end
end
local excess = 0
if cap_max > 0 then excess = #live + 1 - cap_max end
local refused = excess > 0 and not evict
if excess > 0 and evict then
  for i = 1, excess do
    if not live[i].s then return {'INVALID_WRITE', 'cannot evict an undecodable member'} end
  end
end

-- Writes. Members found due get their Expired tombstone (6) even if the cap refuses.
for _, e in ipairs(expired) do
  tombstone(e.k, e.s, 6, at)
  redis.call('ZREM', KEYS[2], e.m)
end
for _, m in ipairs(dead) do redis.call('ZREM', KEYS[2], m) end
if refused then return {'SUBJECT_CAP'} end
local evicted = {}
for i = 1, excess do
  tombstone(live[i].k, live[i].s, 5, at)
  redis.call('ZREM', KEYS[2], live[i].m)
  evicted[i] = live[i].m
end
redis.call('SET', KEYS[1], rec, 'PXAT', num(h.expires_at))
redis.call('ZADD', KEYS[2], num(h.created_at), h.id)
ttl_at_least(KEYS[2], h.deadline)
if rate_max > 0 then
  redis.call('ZADD', KEYS[3], num(at), h.id)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(at - window))
  ttl_at_least(KEYS[3], at + window)
end
return {'INSERTED', unpack(evicted)}
