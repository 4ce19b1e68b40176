-- spendgate restore_v1: set settled counters from the ledger and mark the store seeded.
-- Held reservations and fired alert marks are kept.
-- IMPORTANT: never change the behaviour of a shipped script in place; add restore_v2.lua.
--
-- KEYS: [1] seeded marker, then one hash per entry
-- ARGV: mode ('if_unseeded' | 'if_missing' | 'overwrite'), per entry: usd_nanos, tokens,
--       requests, ttl_ms (0: none)
-- Returns 1 if it wrote, 0 if the store was already seeded (mode if_unseeded).
local mode = ARGV[1]
if mode == 'if_unseeded' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  local h, a = KEYS[i], 1 + (i - 2) * 4
  if mode ~= 'if_missing' or redis.call('EXISTS', h) == 0 then
    redis.call('HSET', h, 'usd', ARGV[a + 1], 'tok', ARGV[a + 2], 'req', ARGV[a + 3])
    local ttl = tonumber(ARGV[a + 4])
    if ttl > 0 then redis.call('PEXPIRE', h, ttl) end
  end
end
redis.call('SET', KEYS[1], '1')
return 1
