-- The whole ingest of a CSV (stage, check, replace the dates, bitcoin for
-- every miner, rollups, the invalidation record: `quarry ingest
-- curtailment`) against a bare COPY of the same rows, in the same run:
--   copy_temp   COPY into a temporary copy of curtailment_records (no
--               indexes, no WAL): the floor any load of these rows pays
--   copy_table  COPY into a logged copy with the same indexes
-- Medians of ROUNDS; each ingest replaces the dates the previous one wrote.
--   quarry run bench/bench_ingest.lua FILE.csv ROUNDS
local quarry = require "quarry"
local core = require "quarry.core"
local util = dofile(arg[0]:match("^(.*)/") .. "/util.lua")
local ingest = require "quarry.ingest"

local path, rounds = arg[1], tonumber(arg[2] or "5")
local db = quarry.db
local f = assert(io.open(path, "rb"))
local text = f:read("a")
f:close()
local header, body = text:match("^([^\n]*)\n(.*)$")
local rows = select(2, body:gsub("\n", ""))

local function copy_into(tx, table_name)
  local sent = false
  local t0 = core.now_ns()
  local n = tx:copy_in(("COPY %s (%s) FROM STDIN WITH (FORMAT csv)"):format(table_name, header), function()
    if sent then return nil end
    sent = true
    return body
  end)
  assert(n == rows, n)
  return util.ms_since(t0)
end

local whole, temp, logged = {}, {}, {}
for i = 1, rounds do
  local t0 = core.now_ns()
  ingest.curtailment(db, path, quarry.cache)
  whole[i] = util.ms_since(t0)
  local ok, err = db:transaction(function(tx)
    tx:exec("CREATE TEMP TABLE bench_copy (LIKE curtailment_records INCLUDING DEFAULTS) ON COMMIT DROP")
    temp[i] = copy_into(tx, "bench_copy")
    tx:exec("CREATE TABLE bench_copy_logged (LIKE curtailment_records INCLUDING ALL)")
    logged[i] = copy_into(tx, "bench_copy_logged")
    error("roll back", 0)
  end)
  assert(not ok and err == "roll back", err)
end
local w, t, l = util.median(whole), util.median(temp), util.median(logged)
print(("rows %d"):format(rows))
print(("ingest_ms %.1f"):format(w))
print(("copy_temp_ms %.1f"):format(t))
print(("copy_table_ms %.1f"):format(l))
