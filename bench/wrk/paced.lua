-- post.lua with a pause of BENCH_DELAY_MS after each response on a connection, so the load
-- stays below the proxy's capacity and latency shows stalls rather than queueing (mix-100k).
dofile(os.getenv("BENCH_LUA_DIR") .. "/post.lua")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function delay()
  return pause
end
