"""The Lua scripts of the Redis stream store (``redis_store.py``): the steps that must be one
step in Redis because they read and write several keys (opening within the limits, ending,
pruning the expired). Writing a stream's state is not here: it is a WATCH, MULTI/EXEC
compare-and-set, so that its large fields are not copied through Lua.

Keys, under the prefix ``P`` (FRAMECAST_STREAM_REDIS_PREFIX): ``P s:<id>`` a stream (a hash),
``P open`` every open stream as ``<id>\\t<model>\\t<s|g>`` and ``P open:<model>`` its ids (sorted
sets scored by when each may have expired), ``P ended:<id>`` why a stream ended.
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
    local sid = string.sub(m, 1, a - 1)
    local model = string.sub(m, a + 1, b - 1)
    local left = redis.call('PTTL', P .. 's:' .. sid)
    if left > 0 then
      redis.call('ZADD', P .. 'open', now + left, m)
      redis.call('ZADD', P .. 'open:' .. model, now + left, sid)
    else
      redis.call('ZREM', P .. 'open', m)
      redis.call('ZREM', P .. 'open:' .. model, sid)
      local hint = 'open a new one with POST /v1/models/' .. model .. '/streams'
      if string.sub(m, b + 1) == 'g' then
        hint = 'open a new one with POST /v1/compare/streams'
      end
      redis.call('SET', P .. 'ended:' .. sid,
        'expired: no frame came within its idle timeout; ' .. hint, 'PX', ended_ttl, 'NX')
    end
  end
end
"""

# KEYS[1] the hash; ARGV: prefix, id, ttl ms, max total, max per model, ended ttl ms, kind,
# n models, the models..., then field, value, ...
CREATE = (
    _PRUNE
    + _NOW
    + """
local P, sid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
prune(P, now, tonumber(ARGV[6]))
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 0} end
local n = tonumber(ARGV[8])
local total = redis.call('ZCARD', P .. 'open')
if total + n > tonumber(ARGV[4]) then return {0, total} end
for i = 1, n do
  local c = redis.call('ZCARD', P .. 'open:' .. ARGV[8 + i])
  if c + 1 > tonumber(ARGV[5]) then return {i, c} end
end
local fields = {}
for i = 9 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 1, n do
  redis.call('ZADD', P .. 'open', now + ttl, sid .. '\\t' .. ARGV[8 + i] .. '\\t' .. ARGV[7])
  redis.call('ZADD', P .. 'open:' .. ARGV[8 + i], now + ttl, sid)
end
redis.call('DEL', P .. 'ended:' .. sid)
return {-2, 0}
"""
)

# KEYS[1] the hash; ARGV: prefix, id, why, ended ttl ms → 1 ended, 0 not open
END = """
local P, sid = ARGV[1], ARGV[2]
local got = redis.call('HMGET', KEYS[1], 'models', 'kind')
if not got[1] then return 0 end
redis.call('DEL', KEYS[1])
for m in string.gmatch(got[1], '[^\\t]+') do
  redis.call('ZREM', P .. 'open', sid .. '\\t' .. m .. '\\t' .. got[2])
  redis.call('ZREM', P .. 'open:' .. m, sid)
end
redis.call('SET', P .. 'ended:' .. sid, ARGV[3], 'PX', tonumber(ARGV[4]))
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
