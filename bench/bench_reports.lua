-- Report and ingest benchmarks (bench/run_reports.sh runs this at scale 1 and 3).
--   quarry run bench/bench_reports.lua reports   daily/monthly/yearly: cold, cached, PostgreSQL's own time
--   quarry run bench/bench_reports.lua ingest N  COPY vs row-by-row INSERT of N rows, and the whole ingest
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
  local root = require("quarry.services").root()
  local cases = { { "daily", { date = "2024-03-12" }, "farm" }, { "monthly", { month = "2024-03" }, "day" },
                  { "yearly", { year = "2024" }, "month" } }
  for _, c in ipairs(cases) do
    local plugin = report.find(root, c[1])
    local p = report.params(plugin, c[2])
    local cold, cached = {}, {}
    for i = 1, 15 do
      local t0 = core.now_ns()
      report.run(db, quarry.cache, plugin, p, { no_cache = true })
      cold[i] = ms_since(t0)
    end
    report.run(db, quarry.cache, plugin, p, {}) -- fill the cache
    local redis_only = require("quarry.cache").new({ url = quarry.settings().redis_url,
                                                     prefix = quarry.cache.prefix })
    for i = 1, 200 do
      local t0 = core.now_ns()
      local r = report.run(db, redis_only, plugin, p, {})
      cached[i] = ms_since(t0)
      assert(r.cached)
    end
    -- PostgreSQL's own execution time of the same queries the report runs
    -- (over the rollups), and of the same breakdowns over the raw rows
    local from, to = report.range(p)
    local function pg_time(make)
      local total = 0
      for _, by in ipairs({ c[3], "all" }) do
        local sql = make(by)
        for _, q in ipairs({ sql.curtailment, sql.bitcoin }) do
          local times = {}
          for i = 1, 5 do
            local plan = sql.party and db:explain(q, from, to, nil, nil) or db:explain(q, from, to, nil)
            times[i] = plan["Execution Time"]
          end
          total = total + median(times)
        end
      end
      return total
    end
    print(("%s_cold_ms %.3f ms"):format(c[1], median(cold)))
    print(("%s_cached_ms %.3f ms"):format(c[1], median(cached)))
    print(("%s_pg_ms %.3f ms"):format(c[1], pg_time(function(by) return summaries.breakdown_rollup_sql(by) end)))
    print(("%s_direct_pg_ms %.3f ms"):format(c[1], pg_time(function(by) return summaries.breakdown_sql(by) end)))
  end
elseif mode == "ingest" then
  local n = math.tointeger(tonumber(arg[2] or "50000"))
  local seed = require "quarry.seed"
  local path = os.tmpname()
  -- enough days of 2024 to give n rows
  local rows = seed.write_curtailment(path, "2024-01-01", "2024-01-31", 1)
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  table.remove(lines, 1)
  n = math.min(n, #lines)
  local cols = "settlement_date, settlement_period, farm_id, lead_party_name, volume, payment, original_price, "
    .. "final_price, so_flag, cadl_flag"
  local ok, res = db:transaction(function(tx)
    tx:exec("CREATE TEMP TABLE bench_target (LIKE curtailment_records INCLUDING DEFAULTS) ON COMMIT DROP")
    -- row by row: one prepared INSERT per row, the way an ORM loop does it
    local t0 = core.now_ns()
    local ins = "INSERT INTO bench_target (" .. cols .. ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
    for i = 1, n do
      local f = {}
      for v in (lines[i] .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
      tx:exec(ins, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10])
    end
    local insert_s = ms_since(t0) / 1000
    tx:exec("TRUNCATE bench_target")
    t0 = core.now_ns()
    local i = 0
    local copied = tx:copy_in("COPY bench_target (" .. cols .. ") FROM STDIN WITH (FORMAT csv)", function()
      if i >= n then return nil end
      local chunk = {}
      for j = i + 1, math.min(n, i + 5000) do chunk[#chunk + 1] = lines[j] end
      i = i + #chunk
      return table.concat(chunk, "\n") .. "\n"
    end)
    local copy_s = ms_since(t0) / 1000
    assert(copied == n)
    return { insert = n / insert_s, copy = n / copy_s }
  end)
  assert(ok, res)
  os.remove(path)
  print(("insert_rows_per_s %.0f rows/s"):format(res.insert))
  print(("copy_rows_per_s %.0f rows/s"):format(res.copy))
  print(("ingest_rows %d rows"):format(n))
  print(("source_rows %d rows"):format(rows))
end
