-- Summary latency on the tables as they are (plain or partitioned); run by
-- bench/run_partition.sh before and after `quarry partition apply`.
--   quarry run bench/bench_partition.lua   -> monthly_ms, monthly_pg_ms, yearly_ms, yearly_pg_ms
local quarry = require "quarry"
local core = require "quarry.core"
local summaries = require "quarry.defs.summaries"
local util = dofile(arg[0]:match("^(.*)/") .. "/util.lua")
local median = util.median

local db = quarry.db

for _, c in ipairs({ { "monthly", "2024-03-01" }, { "yearly", "2024-01-01" } }) do
  local s = summaries[c[1]]
  db:query(s, c[2]) -- warm the buffer cache: both layouts are measured warm
  local wall, pg = {}, {}
  for i = 1, 7 do
    local t0 = core.now_ns()
    db:query(s, c[2])
    wall[i] = (core.now_ns() - t0) / 1e6
    pg[i] = db:explain(s.sql, c[2])["Execution Time"]
  end
  print(("%s_ms %.3f"):format(c[1], median(wall)))
  print(("%s_pg_ms %.3f"):format(c[1], median(pg)))
end
