"""The Lua scripts of the Redis stream store (``redis_store.py``): the steps that must be one
step in Redis because they read and write several keys (opening within the limits, ending,
pruning the expired). Writing a stream's state is not here: it is a WATCH, MULTI/EXEC
compare-and-set, so that its large fields are not copied through Lua.

Keys, under the prefix ``P`` (FRAMECAST_STREAM_REDIS_PREFIX): ``P s:<id>`` a stream (a hash),
``P open`` every open stream as ``<id>\\t<model>\\t<s|g>\\t<owner>`` and ``P open:<model>`` its
ids (sorted sets scored by when each may have expired), ``P own:<owner>`` the ids of one key's
streams (scored alike; counted against its ``max_streams``), ``P ended:<id>`` the tombstone of an
ended stream (``<owner>\\x1f<why>``), ``P t:<hash>`` a WebSocket ticket and ``P tickets`` those
waiting (scored by expiry).
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The sorted sets score each open stream by when it may have expired (its TTL at open, pushed on
# here, never at each write): entries past that score whose hash is still there are scored
# again by its TTL; those whose hash expired leave the sets and leave a tombstone.
_PRUNE = """
local function prune(P, now, ended_ttl)
  local gone = redis.call('ZRANGEBYSCORE', P .. 'open', '-inf', now)
  for _, m in ipairs(gone) do
    local a = string.find(m, '\\t', 1, true)
    local b = string.find(m, '\\t', a + 1, true)
    local c = string.find(m, '\\t', b + 1, true)
    local sid = string.sub(m, 1, a - 1)
    local model = string.sub(m, a + 1, b - 1)
    local kind = string.sub(m, b + 1, b + 1)
    local owner = ''
    if c then owner = string.sub(m, c + 1) end
    local left = redis.call('PTTL', P .. 's:' .. sid)
    if left > 0 then
      redis.call('ZADD', P .. 'open', now + left, m)
      redis.call('ZADD', P .. 'open:' .. model, now + left, sid)
    else
      redis.call('ZREM', P .. 'open', m)
      redis.call('ZREM', P .. 'open:' .. model, sid)
      local hint = 'open a new one with POST /v1/models/' .. model .. '/streams'
      if kind == 'g' then
        hint = 'open a new one with POST /v1/compare/streams'
      end
      redis.call('SET', P .. 'ended:' .. sid,
        owner .. '\\31' .. 'expired: no frame came within its idle timeout; ' .. hint,
        'PX', ended_ttl, 'NX')
    end
  end
end
"""

# a key's streams (P own:<owner>), those expired dropped first → how many are open
_OWNED = """
local function owned(P, owner, now)
  local key = P .. 'own:' .. owner
  for _, sid in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', now)) do
    local left = redis.call('PTTL', P .. 's:' .. sid)
    if left > 0 then
      redis.call('ZADD', key, now + left, sid)
    else
      redis.call('ZREM', key, sid)
    end
  end
  return redis.call('ZCARD', key)
end
"""

# KEYS[1] the hash; ARGV: prefix, id, ttl ms, max total, max per model, ended ttl ms, kind,
# owner ('' for none), the owner's max streams (0: none), n models, the models..., then field,
# value, ... → {-2, 0} opened, {-1, 0} open already, {0, total} / {i, count} a limit of the
# server, {-3, count} the owner's
CREATE = (
    _PRUNE
    + _OWNED
    + _NOW
    + """
local P, sid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local owner, most = ARGV[8], tonumber(ARGV[9])
prune(P, now, tonumber(ARGV[6]))
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 0} end
if owner ~= '' and most > 0 then
  local held = owned(P, owner, now)
  if held + 1 > most then return {-3, held} end
end
local n = tonumber(ARGV[10])
local total = redis.call('ZCARD', P .. 'open')
if total + n > tonumber(ARGV[4]) then return {0, total} end
for i = 1, n do
  local c = redis.call('ZCARD', P .. 'open:' .. ARGV[10 + i])
  if c + 1 > tonumber(ARGV[5]) then return {i, c} end
end
local fields = {}
for i = 11 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 1, n do
  redis.call('ZADD', P .. 'open', now + ttl,
    sid .. '\\t' .. ARGV[10 + i] .. '\\t' .. ARGV[7] .. '\\t' .. owner)
  redis.call('ZADD', P .. 'open:' .. ARGV[10 + i], now + ttl, sid)
end
if owner ~= '' then redis.call('ZADD', P .. 'own:' .. owner, now + ttl, sid) end
redis.call('DEL', P .. 'ended:' .. sid)
return {-2, 0}
"""
)

# KEYS[1] the hash; ARGV: prefix, id, why, ended ttl ms → 1 ended, 0 not open
END = """
local P, sid = ARGV[1], ARGV[2]
local got = redis.call('HMGET', KEYS[1], 'models', 'kind', 'owner')
if not got[1] then return 0 end
local owner = got[3] or ''
redis.call('DEL', KEYS[1])
for m in string.gmatch(got[1], '[^\\t]+') do
  local member = sid .. '\\t' .. m .. '\\t' .. got[2]
  redis.call('ZREM', P .. 'open', member .. '\\t' .. owner, member)
  redis.call('ZREM', P .. 'open:' .. m, sid)
end
if owner ~= '' then redis.call('ZREM', P .. 'own:' .. owner, sid) end
redis.call('SET', P .. 'ended:' .. sid, owner .. '\\31' .. ARGV[3], 'PX', tonumber(ARGV[4]))
return 1
"""

# ARGV: prefix, ended ttl ms, id → why it ended (or nil), once the expired are pruned
WHY = (
    _PRUNE
    + _NOW
    + """
prune(ARGV[1], now, tonumber(ARGV[2]))
return redis.call('GET', ARGV[1] .. 'ended:' .. ARGV[3])
"""
)

# ARGV: prefix, ended ttl ms → the ids open
OPEN = (
    _PRUNE
    + _NOW
    + """
prune(ARGV[1], now, tonumber(ARGV[2]))
return redis.call('ZRANGE', ARGV[1] .. 'open', 0, -1)
"""
)

# ARGV: prefix, the ticket's hash, grant, ttl ms, most waiting → 1 kept, 0 too many wait
TICKET = (
    _NOW
    + """
local P = ARGV[1]
redis.call('ZREMRANGEBYSCORE', P .. 'tickets', '-inf', now)
if redis.call('ZCARD', P .. 'tickets') >= tonumber(ARGV[5]) then return 0 end
redis.call('SET', P .. 't:' .. ARGV[2], ARGV[3], 'PX', tonumber(ARGV[4]))
redis.call('ZADD', P .. 'tickets', now + tonumber(ARGV[4]), ARGV[2])
return 1
"""
)

# ARGV: prefix, the ticket's hash → its grant (once), or nil
TAKE = """
local P = ARGV[1]
local got = redis.call('GET', P .. 't:' .. ARGV[2])
if got then
  redis.call('DEL', P .. 't:' .. ARGV[2])
  redis.call('ZREM', P .. 'tickets', ARGV[2])
end
return got
"""
