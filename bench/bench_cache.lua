-- The Lua side of the cache benchmarks in bench/run.sh.
--   quarry run bench/bench_cache.lua hit ROUNDS     get_or_compute hits of a ~10 KB summary
--   quarry run bench/bench_cache.lua invalidate N   a month among N keys: by group vs by SCAN
local quarry = require "quarry"
local core = require "quarry.core"
local median = dofile(arg[0]:match("^(.*)/") .. "/util.lua").median

local mode, n = arg[1], math.tointeger(tonumber(arg[2] or "0"))
assert(quarry.cache.enabled, "the cache is off")
-- The Redis path alone (no invalidation log), and quarry.cache as scripts
-- get it: every hit also checks the log in PostgreSQL.
local cache = require("quarry.cache").new({ url = quarry.settings().redis_url, prefix = quarry.cache.prefix })

local function hits(key, value, c)
  c = c or cache
  cache:invalidate(key:match("^(.-:.-):") .. ":*") -- start from a fresh generation
  local computes = 0
  local function fn() computes = computes + 1 return value end
  c:get_or_compute(key, cache.TTL.LONG, fn)
  local ns = {}
  for _ = 1, 2 do -- second pass measured, first warms
    for i = 1, n do
      local t0 = core.now_ns()
      c:get_or_compute(key, cache.TTL.LONG, fn)
      ns[i] = core.now_ns() - t0
    end
  end
  assert(computes == 1, "the hit path recomputed")
  return median(ns) / 1000, cache:keys(key .. "@*")[1].key
end

if mode == "hit" then
  -- A month's daily summary: 31 rows of the fields a report shows.
  local rows = {}
  for d = 1, 31 do
    rows[d] = { settlement_date = ("2024-03-%02d"):format(d), period_count = 48, farm_count = 61,
      total_volume = "31542.123456", total_payment = "-1834421.55", bitcoin_mined = 1.2345678 * d,
      difficulty = "83148355189239", miner_model = "S19J_PRO", lead_party = "Seagreen Wind Energy Limited",
      note = string.rep("x", 160) }
  end
  local us, name = hits("monthly_mining:2024-03:S19J_PRO:all", rows)
  print(("lua_hit_table_us %.2f us"):format(us))
  print(("table_key %s key"):format(name))
  -- The same size as one string (a rendered report): the cache path alone.
  us, name = hits("monthly_report:2024-03:S19J_PRO:all", string.rep("2024-03-01,48,61,31542.12\n", 500))
  print(("lua_hit_string_us %.2f us"):format(us))
  print(("string_key %s key"):format(name))
  -- With the invalidation log checked, as quarry.cache does it.
  require("quarry.migrate").up(quarry.db)
  us = hits("monthly_mining:2024-04:S19J_PRO:all", rows, quarry.cache)
  print(("lua_hit_logged_us %.2f us"):format(us))
  local encoded = core.encode(rows)
  local t0 = core.now_ns()
  for _ = 1, n do core.decode(encoded) end
  print(("decode_table_us %.2f us"):format((core.now_ns() - t0) / n / 1000))
elseif mode == "invalidate" then
  cache:clear()
  local months = {}
  for y = 2022, 2025 do for m = 1, 12 do months[#months + 1] = ("%d-%02d"):format(y, m) end end
  local per = n // #months
  local batch = {}
  local function flush()
    if #batch > 0 then assert(cache.conn:pipeline(batch)) end
    batch = {}
  end
  for _, month in ipairs(months) do
    for i = 1, per do
      local name = ("%smonthly_mining:%s:M%d:all@0.0.0.0"):format(cache.prefix, month, i)
      batch[#batch + 1] = { "SET", name, "v", "EX", 3600 }
      if #batch == 1000 then flush() end
    end
  end
  flush()
  local total = cache.conn:call("DBSIZE")
  local t0 = core.now_ns()
  assert(cache:invalidate("monthly_mining:2024-03:*") == "group")
  local group_us = (core.now_ns() - t0) / 1000
  t0 = core.now_ns()
  local removed = cache:scan_unlink(cache.prefix .. "monthly_mining:2024-03:*")
  local scan_us = (core.now_ns() - t0) / 1000
  print(("keys_total %d keys"):format(total))
  print(("month_keys %d keys"):format(removed))
  print(("invalidate_group_us %.1f us"):format(group_us))
  print(("invalidate_scan_us %.1f us"):format(scan_us))
  cache:clear()
else
  error("usage: bench_cache.lua hit ROUNDS | invalidate N")
end
