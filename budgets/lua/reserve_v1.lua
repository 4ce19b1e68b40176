-- spendgate reserve_v1: admit one request against every budget bucket and rate limit that
-- applies to it, or change nothing. One round trip, atomic.
-- IMPORTANT: never change the behaviour of a shipped script in place. Copy it to reserve_v2.lua,
-- so that replicas of two versions never run different logic under one name during a rollout.
--
-- KEYS: [1] seeded marker; per bucket i: hash, holds zset; per rate limit j: tat string
-- ARGV: now_ms, rid, expires_at_ms, demand usd_nanos, tokens, requests, n_buckets, n_rates,
--       per bucket: limit usd_nanos, limit tokens, limit requests (-1: none), ttl_ms (0: none)
--       per rate limit: unit (1 tokens, 2 requests), interval_ms, window_ms
-- Returns {0, used[i] = {usd, tok, req incl. this demand}, rates[j] = {remaining, ms_to_full}}
--       | {1, bucket i, unit (1..3), spent} | {2, rate j, retry_after_ms} | {3} (unseeded)
-- Amounts stay strings where they are written (Lua prints big numbers as 1e+15).
local HELD = {'husd', 'htok', 'hreq'}
local function incr(key, field, amount, negate)
  if amount ~= '0' then
    redis.call('HINCRBY', key, field, negate and ('-' .. amount) or amount)
  end
end
local function purge(h, z, now)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do
    local hold = redis.call('HGET', h, 'r:' .. old)
    if hold then
      local u = 1
      for amount in string.gmatch(hold, '%d+') do
        incr(h, HELD[u], amount, true)
        u = u + 1
      end
      redis.call('HDEL', h, 'r:' .. old)
    end
    redis.call('ZREM', z, old)
  end
end

if redis.call('EXISTS', KEYS[1]) == 0 then return {3} end
local now = tonumber(ARGV[1])
local rid, expires_at = ARGV[2], ARGV[3]
local demand = {ARGV[4], ARGV[5], ARGV[6]}
local nb, nr = tonumber(ARGV[7]), tonumber(ARGV[8])

local used = {}
for i = 1, nb do
  local h, z, a = KEYS[2 * i], KEYS[2 * i + 1], 8 + (i - 1) * 4
  purge(h, z, now)
  local v = redis.call('HMGET', h, 'usd', 'tok', 'req', 'husd', 'htok', 'hreq')
  local row = {}
  for u = 1, 3 do
    local spent = tonumber(v[u] or '0') + tonumber(v[u + 3] or '0')
    local limit = tonumber(ARGV[a + u])
    if limit >= 0 and spent + tonumber(demand[u]) > limit then return {1, i, u, spent} end
    row[u] = spent + tonumber(demand[u])
  end
  used[i] = row
end

local tats, rates = {}, {}
for j = 1, nr do
  local k, a = KEYS[1 + 2 * nb + j], 8 + nb * 4 + (j - 1) * 3
  local unit, interval, window = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local base = tonumber(redis.call('GET', k) or '0')
  if base < now then base = now end
  local new = base + tonumber(demand[unit + 1]) * interval
  if new - now > window and base > now then
    return {2, j, math.ceil(math.min(new - window - now, base - now))}
  end
  tats[j] = new
  rates[j] = {math.max(0, math.floor((window - (new - now)) / interval + 1e-9)), math.ceil(new - now)}
end

for i = 1, nb do
  local h, z = KEYS[2 * i], KEYS[2 * i + 1]
  for u = 1, 3 do incr(h, HELD[u], demand[u], false) end
  redis.call('HSET', h, 'r:' .. rid, demand[1] .. ' ' .. demand[2] .. ' ' .. demand[3])
  redis.call('ZADD', z, expires_at, rid)
  local ttl = tonumber(ARGV[8 + (i - 1) * 4 + 4])
  if ttl > 0 then
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', z, ttl)
  end
end
for j = 1, nr do
  redis.call('SET', KEYS[1 + 2 * nb + j], string.format('%.3f', tats[j]),
    'PX', math.ceil(tats[j] - now) + 1000)
end
return {0, used, rates}
