-- A cold report (no cache) through the runner, ROUNDS times: its median in
-- ms. The shipped reports fetch their rows and their totals with
-- ctx.parallel; run with DB_POOL_MAX=1 the same plugin does them one after
-- another on its one connection.
--   quarry run bench/bench_report_cold.lua REPORT PARAM VALUE ROUNDS [direct|cached]
-- (direct: from the raw rows, not the rollups; cached: through the shared
-- cache, a hit after the first round)
local quarry = require "quarry"
local core = require "quarry.core"
local util = dofile(arg[0]:match("^(.*)/") .. "/util.lua")
local report = require "quarry.report"

local name, param, value, rounds, mode = arg[1], arg[2], arg[3], tonumber(arg[4] or "9"), arg[5]
local opts = { no_cache = mode ~= "cached", direct = mode == "direct" }
local cache = mode == "cached" and quarry.cache or nil
local plugin = report.find(require("quarry.services").root(), name)
local p = report.params(plugin, { [param] = value })
local times = {}
report.run(quarry.db, cache, plugin, p, opts) -- warm the connections and plans
for i = 1, rounds do
  local t0 = core.now_ns()
  report.run(quarry.db, cache, plugin, p, opts)
  times[i] = util.ms_since(t0)
end
print(("cold_ms %.2f"):format(util.median(times)))
