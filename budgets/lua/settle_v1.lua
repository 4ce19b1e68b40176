-- spendgate settle_v1: replace a reservation's hold with the actual amounts, which may be
-- larger (usage can exceed the estimate) or smaller (the surplus returns); fire alert marks
-- once; correct the GCRA rate buckets by the difference. One round trip, atomic.
-- The actual amount is charged even when the hold has already expired and been purged.
-- IMPORTANT: never change the behaviour of a shipped script in place; add settle_v2.lua.
--
-- KEYS: per bucket: hash, holds zset; per rate limit: tat string
-- ARGV: now_ms, rid, actual usd_nanos, tokens, requests, reserved usd_nanos, tokens, requests,
--       n_buckets, n_rates,
--       per bucket: ttl_ms, n_alerts, per alert: field, unit (0..2), threshold
--       per rate limit: unit (1 tokens, 2 requests), interval_ms
-- Returns {settled[i] = {usd, tok, req}, fired = {field, ...}}
local SETTLED, HELD = {'usd', 'tok', 'req'}, {'husd', 'htok', 'hreq'}
local function incr(key, field, amount, negate)
  if amount ~= '0' then
    redis.call('HINCRBY', key, field, negate and ('-' .. amount) or amount)
  end
end
local p = 0
local function arg()
  p = p + 1
  return ARGV[p]
end

local now, rid = tonumber(arg()), arg()
local actual = {arg(), arg(), arg()}
local reserved = {arg(), arg(), arg()}
local nb, nr = tonumber(arg()), tonumber(arg())
local settled, fired = {}, {}
for i = 1, nb do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local hold = redis.call('HGET', h, 'r:' .. rid)
  if hold then
    local u = 1
    for amount in string.gmatch(hold, '%d+') do
      incr(h, HELD[u], amount, true)
      u = u + 1
    end
    redis.call('HDEL', h, 'r:' .. rid)
  end
  redis.call('ZREM', z, rid)
  for u = 1, 3 do incr(h, SETTLED[u], actual[u], false) end
  local v = redis.call('HMGET', h, 'usd', 'tok', 'req')
  local row = {tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')}
  local ttl, na = tonumber(arg()), tonumber(arg())
  for _ = 1, na do
    local field, unit, threshold = arg(), tonumber(arg()), tonumber(arg())
    if row[unit + 1] >= threshold and redis.call('HSETNX', h, field, '1') == 1 then
      fired[#fired + 1] = field
    end
  end
  if ttl > 0 then
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', z, ttl)
  end
  settled[i] = row
end
for j = 1, nr do
  local k = KEYS[2 * nb + j]
  local unit, interval = tonumber(arg()), tonumber(arg())
  local delta = (tonumber(actual[unit + 1]) - tonumber(reserved[unit + 1])) * interval
  local tat = redis.call('GET', k)
  local new = nil
  if delta > 0 then
    new = math.max(tonumber(tat or '0'), now) + delta
  elseif tat and delta < 0 then
    new = math.max(tonumber(tat) + delta, now)
  end
  if new then
    redis.call('SET', k, string.format('%.3f', new), 'PX', math.ceil(new - now) + 1000)
  end
end
return {settled, fired}
