-- spendgate read_v1: settled and held amounts of some buckets, after purging expired holds.
-- IMPORTANT: never change the behaviour of a shipped script in place; add read_v2.lua.
--
-- KEYS: per bucket: hash, holds zset. ARGV: now_ms
-- Returns per bucket {usd, tok, req, held usd, held tok, held req}
local HELD = {'husd', 'htok', 'hreq'}
local now, out = tonumber(ARGV[1]), {}
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do
    local hold = redis.call('HGET', h, 'r:' .. old)
    if hold then
      local u = 1
      for amount in string.gmatch(hold, '%d+') do
        if amount ~= '0' then redis.call('HINCRBY', h, HELD[u], '-' .. amount) end
        u = u + 1
      end
      redis.call('HDEL', h, 'r:' .. old)
    end
    redis.call('ZREM', z, old)
  end
  local v = redis.call('HMGET', h, 'usd', 'tok', 'req', 'husd', 'htok', 'hreq')
  local row = {}
  for u = 1, 6 do row[u] = tonumber(v[u] or '0') end
  out[i] = row
end
return out
