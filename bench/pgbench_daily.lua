-- The statements of an uncached daily report (the SQL its two breakdowns
-- run, from lua/quarry/defs/summaries.lua, chosen as report.lua chooses
-- it) as a pgbench script with the parameters written in: what PostgreSQL
-- itself needs per /reports/daily?cache=off, the limit bench/run_serve.sh
-- measures quarry serve against.
--   quarry run bench/pgbench_daily.lua DATE > daily.sql
local quarry = require "quarry"
local summaries = require "quarry.defs.summaries"
local rollup = require "quarry.rollup"

local date = assert(arg[1], "usage: pgbench_daily.lua DATE")
local function literal(v) return v == nil and "NULL" or "'" .. tostring(v):gsub("'", "''") .. "'" end
local args = { date, date } -- from, to; no farm, no lead party

local out = {}
local function emit(sql)
  sql = sql:gsub("%-%-[^\n]*", ""):gsub("%$(%d+)", function(i) return literal(args[tonumber(i)]) end)
  out[#out + 1] = sql:gsub("%s+", " ") .. ";" -- one line each: pgbench ends a statement at a semicolon
end
for _, by in ipairs({ "farm", "all" }) do
  local sql = summaries.breakdown_rollup_sql(by, false, false)
  if sql and sql.party then
    emit(rollup.MIXED_PARTIES_SQL)
    if rollup.mixed_parties(quarry.db, date, date) then sql = nil end
  end
  sql = sql or summaries.breakdown_sql(by, false)
  emit(sql.curtailment)
  emit(sql.bitcoin)
end
io.write(table.concat(out, "\n"), "\n")
