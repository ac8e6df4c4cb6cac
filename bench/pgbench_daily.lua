-- The statements of an uncached daily report (the SQL its two breakdowns
-- run, one statement each, from lua/quarry/defs/summaries.lua, chosen as
-- report.lua chooses it) as a pgbench script with the parameters written in: what PostgreSQL
-- itself needs per /reports/daily?cache=off, the limit bench/run_serve.sh
-- measures quarry serve against (its parts not materialized: the faster
-- form with the values written in).
-- With `tx`, the whole of what a request sends, in the same round trips:
-- its transaction's BEGIN with the sandbox's settings and the miner list
-- (one pipeline), the statements, the coverage (report.COVERAGE_SQL), COMMIT.
--   quarry run bench/pgbench_daily.lua DATE [tx] > daily.sql
local quarry = require "quarry"
local summaries = require "quarry.defs.summaries"
local rollup = require "quarry.rollup"

local date = assert(arg[1], "usage: pgbench_daily.lua DATE [tx]")
local whole = arg[2] == "tx"
local function literal(v) return v == nil and "NULL" or "'" .. tostring(v):gsub("'", "''") .. "'" end
local args = { date, date } -- from, to; no farm, no lead party

local out = {}
if whole then
  local tx = require("quarry.report").sandbox_tx(nil, false)
  out[#out + 1] = "\\startpipeline"
  out[#out + 1] = ("BEGIN ISOLATION LEVEL %s%s;"):format(tx.isolation, tx.read_only and " READ ONLY" or "")
  for stmt in tx.setup:gmatch("[^;]+") do out[#out + 1] = stmt:gsub("^%s+", "") .. ";" end
  out[#out + 1] = "\\endpipeline"
end
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
  local stmt = summaries.combined(sql) -- one statement a breakdown, as report.lua runs it
  -- The bare limit lets the planner choose freely: with the values written
  -- in, the statement runs 10-20% faster with its parts not materialized,
  -- which quarry does only for the generic plans of its bound parameters.
  if not whole then stmt = stmt:gsub(" AS MATERIALIZED %(", " AS (") end
  emit(stmt)
end
if whole then
  emit(require("quarry.report").COVERAGE_SQL) -- which days of the period hold data, on the same snapshot
  out[#out + 1] = "COMMIT;"
end
io.write(table.concat(out, "\n"), "\n")
