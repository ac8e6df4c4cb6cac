-- Rollup benchmarks (bench/run_rollup.sh runs this at scale 1 and 3).
--   quarry run bench/bench_rollup.lua reports [LABEL=URL ...]
--                                               monthly/yearly cold through the Lua API, and the
--                                               direct CTE's own PostgreSQL execution time, on each
--                                               database in turn
--   quarry run bench/bench_rollup.lua ingest    re-ingest March 2024: the share of the time spent
--                                               refreshing the rollups
local quarry = require "quarry"
local core = require "quarry.core"
local report = require "quarry.report"
local summaries = require "quarry.defs.summaries"
local util = dofile(arg[0]:match("^(.*)/") .. "/util.lua")
local median = util.median
local ms_since = util.ms_since

local mode = arg[1]
local db = quarry.db

if mode == "reports" then
  -- arg[2..]: "label=URL" per database (one per scale). The databases are
  -- measured in turn, iteration by iteration, so a drift of the machine
  -- hits every scale alike.
  local dbmod = require "quarry.db"
  local targets = {}
  for i = 2, #arg do
    local label, url = arg[i]:match("^([^=]+)=(.+)$")
    targets[#targets + 1] = { label = label, db = dbmod.new(core.pool_new({ conninfo = url, max_size = 2 },
      core.timings_new())) }
  end
  if #targets == 0 then targets[1] = { label = "1", db = db } end
  local root = require("quarry.services").root()
  for _, c in ipairs({ { "monthly", { month = "2024-03" }, "2024-03-01" },
                       { "yearly", { year = "2024" }, "2024-01-01" } }) do
    local plugin = report.find(root, c[1])
    local p = report.params(plugin, c[2])
    local cold, summary, direct = {}, {}, {}
    for _, t in ipairs(targets) do cold[t], summary[t], direct[t] = {}, {}, {} end
    for i = 1, 21 do
      for _, t in ipairs(targets) do
        local t0 = core.now_ns()
        report.run(t.db, nil, plugin, p, { no_cache = true })
        cold[t][i] = ms_since(t0)
        t0 = core.now_ns()
        t.db:query(summaries[c[1] .. "_rollup"], c[3])
        summary[t][i] = ms_since(t0)
      end
    end
    for i = 1, 3 do
      for _, t in ipairs(targets) do direct[t][i] = t.db:explain(summaries[c[1]].sql, c[3])["Execution Time"] end
    end
    for _, t in ipairs(targets) do
      print(("%s %s_report_ms %.3f"):format(t.label, c[1], median(cold[t])))
      print(("%s %s_summary_ms %.3f"):format(t.label, c[1], median(summary[t])))
      print(("%s %s_direct_pg_ms %.3f"):format(t.label, c[1], median(direct[t])))
    end
  end
elseif mode == "ingest" then
  local seed = require "quarry.seed"
  local ingest = require "quarry.ingest"
  local scale = math.tointeger(tonumber(arg[2] or "1"))
  local path = os.tmpname()
  seed.write_curtailment(path, "2024-03-01", "2024-03-31", scale)
  local shares = {}
  local rows
  for i = 1, 3 do
    quarry.reset_timings()
    local t0 = core.now_ns()
    rows = ingest.curtailment(db, path).rows
    local total = ms_since(t0)
    local rollup = 0
    for name, s in pairs(quarry.timings()) do
      if name:match("^rollup%.") then rollup = rollup + s.total_ms end
    end
    shares[i] = { share = rollup / total, total = total, rollup = rollup }
  end
  os.remove(path)
  table.sort(shares, function(a, b) return a.share < b.share end)
  local m = shares[2]
  print(("ingest_rows %d"):format(rows))
  print(("ingest_ms %.1f"):format(m.total))
  print(("rollup_ms %.1f"):format(m.rollup))
  print(("rollup_share %.1f%%"):format(100 * m.share))
end
