-- spendgate charge_v1: add settled amounts with no reservation: spend counted locally while
-- Redis was unreachable (fail_open), replayed when it returns.
-- IMPORTANT: never change the behaviour of a shipped script in place; add charge_v2.lua.
--
-- KEYS: one hash per entry. ARGV per entry: usd_nanos, tokens, requests, ttl_ms (0: none)
local SETTLED = {'usd', 'tok', 'req'}
for i = 1, #KEYS do
  local h, a = KEYS[i], (i - 1) * 4
  for u = 1, 3 do
    if ARGV[a + u] ~= '0' then redis.call('HINCRBY', h, SETTLED[u], ARGV[a + u]) end
  end
  local ttl = tonumber(ARGV[a + 4])
  if ttl > 0 then redis.call('PEXPIRE', h, ttl) end
end
return #KEYS
