-- The whole ingest of a CSV (stage, check, replace the dates, bitcoin for
-- every miner, rollups, the invalidation record: `quarry ingest
-- curtailment`) against a bare COPY of the same rows, in the same run:
--   copy_temp   COPY into a temporary copy of curtailment_records (no
--               indexes, no WAL): the floor any load of these rows pays
--   copy_table  COPY into a logged copy with the same indexes
--   copy_both   that, plus a COPY of the bitcoin rows the ingest computed
--               into a logged copy of their table with its indexes: the
--               least a durable load of what the ingest stores must write
-- Each round times the ingest three times: a first load into emptied
-- tables; a reload of the same file over it (a re-run, a refresh or a
-- repair of what is there: every date compared, none rewritten); and a
-- reload where every row's volume is written with one more digit (the same
-- value, another text: every date rewritten, every bitcoin row updated).
-- Medians of ROUNDS.
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
-- the same rows, each volume (the fifth field: the seed quotes none) with a 0 more
local changed_path = os.tmpname()
do
  local out = assert(io.open(changed_path, "wb"))
  out:write(header, "\n")
  for line in body:gmatch("[^\n]+") do
    out:write((line:gsub("^([^,]*,[^,]*,[^,]*,[^,]*,[^,]*)", "%10", 1)), "\n")
  end
  out:close()
end

local function copy_into(tx, table_name, cols, data, count)
  local sent = false
  local t0 = core.now_ns()
  local n = tx:copy_in(("COPY %s (%s) FROM STDIN WITH (FORMAT csv)"):format(table_name, cols), function()
    if sent then return nil end
    sent = true
    return data
  end)
  assert(n == count, n)
  return util.ms_since(t0)
end

-- The bitcoin rows the ingest wrote, as CSV (made outside the timed part).
local BTC_COLS = "settlement_date, settlement_period, farm_id, miner_model, curtailed_energy, bitcoin_mined, "
  .. "difficulty, block_reward"
local function bitcoin_csv()
  local out = {}
  for i, r in ipairs(db:query("SELECT " .. BTC_COLS:gsub("settlement_date", "settlement_date::text")
      .. " FROM historical_bitcoin_calculations ORDER BY id")) do
    out[i] = table.concat({ r.settlement_date, r.settlement_period, r.farm_id, r.miner_model, r.curtailed_energy,
                            r.bitcoin_mined, r.difficulty, r.block_reward }, ",")
  end
  return table.concat(out, "\n") .. "\n", #out
end

-- Every dated table, emptied for a first load.
local DATED = { "curtailment_records", "historical_bitcoin_calculations" }
for _, r in ipairs(db:query("SELECT tablename AS t FROM pg_tables WHERE tablename LIKE 'rollup\\_%' ORDER BY 1")) do
  DATED[#DATED + 1] = r.t
end

local first, whole, changed, temp, logged, both = {}, {}, {}, {}, {}, {}
local btc, btc_rows
for i = 1, rounds do
  db:exec("TRUNCATE " .. table.concat(DATED, ", ")) -- names from the catalogue, all lower-case identifiers
  local t0 = core.now_ns()
  ingest.curtailment(db, path, quarry.cache)
  first[i] = util.ms_since(t0)
  t0 = core.now_ns()
  ingest.curtailment(db, path, quarry.cache)
  whole[i] = util.ms_since(t0)
  t0 = core.now_ns()
  local r = ingest.curtailment(db, changed_path, quarry.cache)
  changed[i] = util.ms_since(t0)
  assert(#r.changed == #r.dates, "the changed file changed every date")
  if not btc then btc, btc_rows = bitcoin_csv() end
  local ok, err = db:transaction(function(tx)
    tx:exec("CREATE TEMP TABLE bench_copy (LIKE curtailment_records INCLUDING DEFAULTS) ON COMMIT DROP")
    temp[i] = copy_into(tx, "bench_copy", header, body, rows)
    tx:exec("CREATE TABLE bench_copy_logged (LIKE curtailment_records INCLUDING ALL)")
    logged[i] = copy_into(tx, "bench_copy_logged", header, body, rows)
    tx:exec("CREATE TABLE bench_btc_logged (LIKE historical_bitcoin_calculations INCLUDING ALL)")
    both[i] = logged[i] + copy_into(tx, "bench_btc_logged", BTC_COLS, btc, btc_rows)
    error("roll back", 0)
  end)
  assert(not ok and err == "roll back", err)
end
local w, t, l, b = util.median(whole), util.median(temp), util.median(logged), util.median(both)
print(("rows %d"):format(rows))
print(("first_ms %.1f"):format(util.median(first)))
print(("bitcoin_rows %d"):format(btc_rows))
print(("ingest_ms %.1f"):format(w))
print(("changed_ms %.1f"):format(util.median(changed)))
print(("copy_temp_ms %.1f"):format(t))
print(("copy_table_ms %.1f"):format(l))
print(("copy_both_ms %.1f"):format(b))
os.remove(changed_path)
