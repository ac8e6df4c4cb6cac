-- quarry.parallel against one query after another, on the same queries:
-- "months", the twelve months of a year each aggregated from the raw rows,
-- or "breakdowns", four independent breakdowns of the year (by farm, day,
-- settlement period and lead party). The limit is what the server itself
-- needs: the slowest query's own execution time, or all of them shared over
-- the machine's cores, whichever is longer.
--   quarry run bench/bench_parallel.lua YEAR CORES ROUNDS [months|breakdowns]
local quarry = require "quarry"
local core = require "quarry.core"
local util = dofile(arg[0]:match("^(.*)/") .. "/util.lua")

local year, cores, rounds, what = arg[1] or "2024", tonumber(arg[2] or "2"), tonumber(arg[3] or "5"), arg[4] or "months"
local db = quarry.db
local MONTH = [[SELECT farm_id, count(*) AS n, sum(-volume) AS mwh, sum(abs(payment)) AS gbp,
  sum(-volume * abs(final_price)) AS w FROM curtailment_records
  WHERE settlement_date BETWEEN $1::date AND ($1::date + interval '1 month' - interval '1 day')::date
  GROUP BY farm_id ORDER BY 3 DESC]]
local function year_by(col)
  return ([[SELECT %s AS key, count(*) AS n, sum(-volume) AS mwh, sum(abs(payment)) AS gbp
  FROM curtailment_records
  WHERE settlement_date BETWEEN $1::date AND ($1::date + interval '1 year' - interval '1 day')::date
  GROUP BY 1 ORDER BY 3 DESC]]):format(col)
end

-- each job: {sql, parameter}
local jobs = {}
if what == "breakdowns" then
  for _, col in ipairs({ "farm_id", "settlement_date", "settlement_period", "lead_party_name" }) do
    jobs[#jobs + 1] = { year_by(col), year .. "-01-01" }
  end
else
  for m = 1, 12 do jobs[m] = { MONTH, ("%s-%02d-01"):format(year, m) } end
end

local function job_fn(j) return function() return #db:query(j[1], j[2]) end end

local seq, par, pg_sum, pg_max = {}, {}, {}, {}
for _ = 1, rounds do
  local t0 = core.now_ns()
  for _, j in ipairs(jobs) do job_fn(j)() end
  seq[#seq + 1] = util.ms_since(t0)
  local fns = {}
  for i, j in ipairs(jobs) do fns[i] = job_fn(j) end
  t0 = core.now_ns()
  quarry.parallel(table.unpack(fns))
  par[#par + 1] = util.ms_since(t0)
  local sum, max = 0, 0
  for _, j in ipairs(jobs) do
    local plan = db:explain(j[1], j[2])
    sum, max = sum + plan["Execution Time"], math.max(max, plan["Execution Time"])
  end
  pg_sum[#pg_sum + 1], pg_max[#pg_max + 1] = sum, max
end
local s, p, sum, max = util.median(seq), util.median(par), util.median(pg_sum), util.median(pg_max)
local limit = math.max(max, sum / cores)
print(("sequential_ms %.2f"):format(s))
print(("parallel_ms %.2f"):format(p))
print(("pg_sum_ms %.2f"):format(sum))
print(("pg_max_ms %.2f"):format(max))
print(("limit_ms %.2f"):format(limit))
