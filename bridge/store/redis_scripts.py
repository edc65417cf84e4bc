"""The Redis store's Lua scripts: each runs atomically on the server, so that replicas never both take a claim,
a lease or a rate-limit slot. Their keys are named in bridge.store.redis_records."""

from __future__ import annotations

# KEYS: due, jobs, leased. ARGV: now, limit, lease end. Moves due jobs' due time to the lease end and returns them:
# each id, then its record.
LEASE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  redis.call('ZADD', KEYS[3], ARGV[3], id)
  local data = redis.call('HGET', KEYS[2], id)
  if data then
    out[#out + 1] = id
    out[#out + 1] = data
  else  -- a due id without a job (damage): dropped, or it would take a place in every lease from now on
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: slots. ARGV: window, limit, member. Returns "0" when a slot was taken, else the seconds to wait.
# The server's clock, so that every replica measures the window alike.
ACQUIRE = """
local t = redis.call('TIME')
local now, window = tonumber(t[1]) + tonumber(t[2]) / 1000000, tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""

# A lane's pending jobs live in the sorted set PREFIX .. 'lane:' .. lane (id -> creation time), named in the
# scripts from the prefix: a lane is any target's rate key.

# KEYS: jobs, created, due, leased, then each admission's claim, stale keys and marks. ARGV[1]: the key prefix;
# ARGV[2]: the deadline (epoch seconds, or 0 for none); ARGV[3]: JSON [[claim's KEYS index or 0, window in
# milliseconds, [[id, due, created, lane, leased until or 0], ...], [stale keys' indexes], [marks' indexes]], ...];
# then each job's record, in that order. Claims are taken in turn (a later admission loses a claim an earlier one
# won); an admission is stale when all its stale keys (one at least) exist; its jobs are written if it is not stale
# and has no claim or won it, and then its marks are set for the window. Returns 1 or 0 for each admission, or
# LATE having written nothing when Redis's clock is past the deadline.
LATE = -1
ADMIT = """
local now = redis.call('TIME')
if ARGV[2] ~= '0' and now[1] + now[2] / 1e6 > tonumber(ARGV[2]) then return -1 end
local function stale(indexes)
  if #indexes == 0 then return false end
  for _, k in ipairs(indexes) do
    if redis.call('EXISTS', KEYS[k]) == 0 then return false end
  end
  return true
end
local won, r = {}, 3
for i, admission in ipairs(cjson.decode(ARGV[3])) do
  local claim = admission[1]
  won[i] = (not stale(admission[4]) and (claim == 0 or redis.call('SET', KEYS[claim], '1', 'PX', admission[2], 'NX')))
    and 1 or 0
  if won[i] == 1 then
    for _, k in ipairs(admission[5]) do redis.call('SET', KEYS[k], '1', 'PX', admission[2]) end
  end
  for _, j in ipairs(admission[3]) do
    r = r + 1
    if won[i] == 1 then
      redis.call('HSET', KEYS[1], j[1], ARGV[r])
      redis.call('ZADD', KEYS[2], j[3], j[1])
      redis.call('ZADD', KEYS[3], j[2], j[1])
      if j[4] ~= '' then redis.call('ZADD', ARGV[1] .. 'lane:' .. j[4], j[3], j[1]) end
      if j[5] ~= 0 then redis.call('ZADD', KEYS[4], j[5], j[1]) end
    end
  end
end
return won
"""

# KEYS: due, jobs, leased. ARGV: the key prefix, lane, now, limit, lease end. The lane's pending jobs under no live
# lease, oldest first, leased until the lease end: each id, then its record.
TAKE = """
local out, found = {}, 0
for _, id in ipairs(redis.call('ZRANGE', ARGV[1] .. 'lane:' .. ARGV[2], 0, -1)) do
  if found >= tonumber(ARGV[4]) then break end
  local leased = redis.call('ZSCORE', KEYS[3], id)
  local data = redis.call('HGET', KEYS[2], id)
  if data and (not leased or tonumber(leased) <= tonumber(ARGV[3])) then
    redis.call('ZADD', KEYS[1], ARGV[5], id)
    redis.call('ZADD', KEYS[3], ARGV[5], id)
    out[#out + 1] = id
    out[#out + 1] = data
    found = found + 1
  end
end
return out
"""

# KEYS: jobs, created, due, done, dead, leased. ARGV[1]: the key prefix; ARGV[2]: JSON [[id, state, due, created,
# lane], ...]; then each job's new fields line, in that order. The line replaces the record's first one: the payload,
# written once, is not sent again. A job no longer stored (forgotten meanwhile) is left out. A record of the first
# layout (one JSON document) gives its payload from that document.
SETTLE = """
for i, j in ipairs(cjson.decode(ARGV[2])) do
  local id, state, due, created, lane = j[1], j[2], j[3], j[4], ARGV[1] .. 'lane:' .. j[5]
  local old = redis.call('HGET', KEYS[1], id)
  if old then
    local at = string.find(old, '\\n', 1, true)
    local payload = at and string.sub(old, at + 1)
    if not payload then  -- a record of the first layout; one that cannot be read keeps no payload
      local ok, doc = pcall(cjson.decode, old)
      payload = ok and type(doc) == 'table' and type(doc.payload) == 'string' and doc.payload or ''
    end
    redis.call('HSET', KEYS[1], id, ARGV[i + 2] .. '\\n' .. payload)
    redis.call('ZADD', KEYS[2], created, id)
    redis.call('ZREM', KEYS[6], id)
    if state == 'pending' then
      if j[5] ~= '' then redis.call('ZADD', lane, created, id) end
      redis.call('ZADD', KEYS[3], due, id)
      redis.call('ZREM', KEYS[4], id)
      redis.call('ZREM', KEYS[5], id)
    else
      if j[5] ~= '' then redis.call('ZREM', lane, id) end
      redis.call('ZREM', KEYS[3], id)
      redis.call('ZREM', state == 'done' and KEYS[5] or KEYS[4], id)
      redis.call('ZADD', state == 'done' and KEYS[4] or KEYS[5], created, id)
    end
  end
end
"""

# KEYS: done, created, jobs. ARGV: history. Forgets the oldest done jobs beyond the history size.
TRIM = """
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local ids = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
return excess
"""
