--- quarry.mining: the bitcoin of curtailed energy, computed in PostgreSQL
-- from lua/quarry/defs/mining.lua. Every function takes an open
-- transaction handle (tx) so callers decide what commits together.
local rules_mod = require "quarry.rules"
local usage = require("quarry.core").usage -- a bad definition is bad input: exit 2

local M = {}

local function validate(defs)
  local src = "lua/quarry/defs/mining.lua"
  if type(defs.rewards) ~= "table" or #defs.rewards == 0 then
    usage(src .. ": 'rewards' must be a non-empty list")
  end
  local last
  for i, r in ipairs(defs.rewards) do
    if not rules_mod.check_date(r.from) then usage(("%s: rewards[%d].from must be a date"):format(src, i)) end
    if not tostring(r.btc):match("^%d+%.?%d*$") then
      usage(("%s: rewards[%d].btc must be a number"):format(src, i))
    end
    if last and r.from <= last then usage(("%s: rewards must be in date order"):format(src)) end
    last = r.from
  end
  local age = defs.difficulty_max_age_days
  if math.type(age) ~= "integer" or age < 1 then
    usage(src .. ": 'difficulty_max_age_days' must be a positive integer")
  end
  if math.type(defs.bitcoin_scale) ~= "integer" or defs.bitcoin_scale < 8 or defs.bitcoin_scale > 30 then
    usage(src .. ": 'bitcoin_scale' must be an integer from 8 to 30")
  end
  return defs
end

M.defs = validate(require "quarry.defs.mining")

--- SQL CASE expression giving the block reward for a date column.
function M.reward_sql(col)
  local parts = { "CASE" }
  for i = #M.defs.rewards, 1, -1 do
    local r = M.defs.rewards[i]
    -- constants from the definitions file, checked above to be a date and a number
    parts[#parts + 1] = ("WHEN %s >= DATE '%s' THEN %s::numeric"):format(col, r.from, r.btc)
  end
  parts[#parts + 1] = "END"
  return table.concat(parts, " ")
end

--- The difficulty in force on each date: { {date=, difficulty=|nil, effective_date=} }.
local DIFFICULTY_SQL = [[
  SELECT d::date::text AS date, p.difficulty, p.effective_date::text AS effective_date
  FROM unnest($1::date[]) AS d
  LEFT JOIN LATERAL (
    SELECT difficulty, effective_date FROM bitcoin_difficulty
    WHERE effective_date <= d AND effective_date > d - $2::int
    ORDER BY effective_date DESC LIMIT 1) p ON true
  WHERE EXISTS (SELECT 1 FROM curtailment_records c WHERE c.settlement_date = d) -- a calm day has no bitcoin
  ORDER BY d]]

local function pg_array(dates) return "{" .. table.concat(dates, ",") .. "}" end
M.pg_array = pg_array

--- The dates of `dates` with curtailment whose difficulty is not known (a
-- date without curtailment has no bitcoin to compute), in order.
function M.lacking_difficulty(tx, dates)
  local missing = {}
  if #dates == 0 then return missing end
  for _, r in ipairs(tx:query(DIFFICULTY_SQL, pg_array(dates), M.defs.difficulty_max_age_days)) do
    if not r.difficulty then missing[#missing + 1] = r.date end
  end
  return missing
end

--- What to tell of dates lacking their difficulty.
function M.lacking_message(missing)
  return ("no bitcoin difficulty known for %s%s (a point within %d days before the date is needed): load it "
    .. "with 'quarry ingest difficulty'"):format(table.concat(missing, ", ", 1, math.min(#missing, 5)),
    #missing > 5 and (" and %d more date(s)"):format(#missing - 5) or "", M.defs.difficulty_max_age_days)
end

--- Raise an error naming the dates with curtailment whose difficulty is not known.
function M.require_difficulty(tx, dates)
  local missing = M.lacking_difficulty(tx, dates)
  if #missing > 0 then
    error(require("quarry.core").error({ code = "usage", message = M.lacking_message(missing) }), 0)
  end
end

--- Replace the bitcoin rows of `dates` from their curtailment rows: one row
-- per (date, period, farm, miner) summing all that farm's acceptances in the
-- period. Returns the number of rows the dates have now.
--
-- A row whose figures come out as stored (to the digit: compared as text,
-- so 1.50 and 1.5 differ) is left alone, and only the rest are written: a
-- re-fetch, a repair, a re-run of the same file or `miners add` mostly
-- recompute what is there, and rewriting each row (three index entries,
-- each finding its deleted twin in the unique key) cost 2.5x the compare.
function M.recalculate(tx, dates)
  if #dates == 0 then return 0 end
  M.require_difficulty(tx, dates)
  local arr = pg_array(dates)
  -- Rows whose farm-period has no curtailment any more, or whose model is gone.
  tx:exec([[
    DELETE FROM historical_bitcoin_calculations h
    WHERE h.settlement_date = ANY($1::date[])
      AND (NOT EXISTS (SELECT 1 FROM curtailment_records c WHERE c.settlement_date = h.settlement_date
                         AND c.settlement_period = h.settlement_period AND c.farm_id = h.farm_id)
           OR NOT EXISTS (SELECT 1 FROM miner_models m WHERE m.name = h.miner_model))]], arr)
  -- BTC = E * F with F = 3.6e9 * TH * 1e12 * reward / (watts * D * 2^32): one
  -- exact factor per date and miner (40 decimal places, so E * F rounds to
  -- the true value), then a single multiplication per farm-period.
  tx:exec({ name = "mining.recalculate", sql = ([[
    MERGE INTO historical_bitcoin_calculations h USING (
      WITH f AS MATERIALIZED (  -- once per date and miner, not per row
        SELECT p.settlement_date, m.name AS miner_model, p.difficulty, p.reward,
               (3600000000 * m.hashrate_th * 1000000000000 * p.reward)::numeric(90, 40)
                 / (m.power_watts * p.difficulty * 4294967296) AS factor
        FROM (  -- the difficulty in force and the reward
          SELECT d AS settlement_date, %s AS reward,
                 (SELECT difficulty FROM bitcoin_difficulty WHERE effective_date <= d
                  ORDER BY effective_date DESC LIMIT 1) AS difficulty
          FROM unnest($1::date[]) AS d) p
        CROSS JOIN miner_models m)
      SELECT e.settlement_date, e.settlement_period, e.farm_id, f.miner_model, e.energy,
             round(e.energy * f.factor, %d) AS bitcoin, f.difficulty, f.reward
      FROM (SELECT settlement_date, settlement_period, farm_id, sum(abs(volume)) AS energy
            FROM curtailment_records
            WHERE settlement_date = ANY($1::date[])
            GROUP BY settlement_date, settlement_period, farm_id) e
      JOIN f USING (settlement_date)) n
    ON h.settlement_date = n.settlement_date AND h.settlement_period = n.settlement_period
       AND h.farm_id = n.farm_id AND h.miner_model = n.miner_model
    WHEN MATCHED AND ROW(h.curtailed_energy::text, h.bitcoin_mined::text, h.difficulty::text, h.block_reward::text)
                     IS DISTINCT FROM ROW(n.energy::text, n.bitcoin::text, n.difficulty::text, n.reward::text) THEN
      UPDATE SET curtailed_energy = n.energy, bitcoin_mined = n.bitcoin, difficulty = n.difficulty,
                 block_reward = n.reward, calculated_at = now()
    WHEN NOT MATCHED THEN
      INSERT (settlement_date, settlement_period, farm_id, miner_model, curtailed_energy, bitcoin_mined,
              difficulty, block_reward)
      VALUES (n.settlement_date, n.settlement_period, n.farm_id, n.miner_model, n.energy, n.bitcoin,
              n.difficulty, n.reward)]])
    :format(M.reward_sql("d"), M.defs.bitcoin_scale) }, arr)
  return tonumber(tx:query_one(
    "SELECT count(*) AS n FROM historical_bitcoin_calculations WHERE settlement_date = ANY($1::date[])", arr).n)
end

-- ---- miner models ----


--- Every miner model: { {name=, hashrate_th=, power_watts=, description=, j_per_th=} }.
function M.models(db)
  return db:query([[SELECT name, hashrate_th::text AS hashrate_th, power_watts::text AS power_watts,
    description, round(power_watts / hashrate_th, 2)::text AS j_per_th FROM miner_models ORDER BY name]])
end

local DATES = "SELECT DISTINCT settlement_date::text AS d FROM curtailment_records "
  .. "WHERE settlement_date BETWEEN $1::date AND $2::date ORDER BY 1"

--- Add a miner model and compute its bitcoin for every stored date, in one
-- dated write (every cached figure goes stale: reports list every model).
-- Returns {dates=, bitcoin_rows=}.
function M.add(db, cache, name, hashrate, watts, description)
  local bounds = require("quarry.defs.bounds")
  if type(name) ~= "string" or not name:match("^[A-Z0-9_]+$") or #name > 32 then
    usage(("miner name '%s' must be 1 to 32 of A-Z, 0-9 and _ (e.g. S21_PRO)"):format(tostring(name)))
  end
  local decimal = require("quarry.rules").decimal
  local th, w = decimal(hashrate), decimal(watts)
  if not th or th <= 0 or th > bounds.miner_hashrate_th.max then
    usage(("--hashrate-th '%s' must be a number of TH/s above 0 and at most %g"):format(tostring(hashrate),
      bounds.miner_hashrate_th.max))
  end
  if not w or w <= 0 or w > bounds.miner_watts.max then
    usage(("--watts '%s' must be a number of watts above 0 and at most %g"):format(tostring(watts),
      bounds.miner_watts.max))
  end
  local _, info = require("quarry.write").dated(db, cache,
    { tables = { "historical_bitcoin_calculations" }, bitcoin = true, everything = true, long = true },
    function(tx, wr)
      -- ON CONFLICT: one added by another process meanwhile is "exists already" too, not a raw key error
      local n = tx:exec("INSERT INTO miner_models (name, hashrate_th, power_watts, description) "
        .. "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING", name, tostring(hashrate), tostring(watts),
        description)
      if n == 0 then usage(("miner model %s exists already (quarry miners lists them)"):format(name)) end
      local dates = {}
      for _, r in ipairs(tx:query(DATES, "0001-01-01", "9999-12-31")) do dates[#dates + 1] = r.d end
      wr:dates(dates)
    end)
  return info
end

--- Recompute the bitcoin of the stored dates in from..to (all by default),
-- as a dated write. Returns {dates=, bitcoin_rows=}.
-- Dates (in $1..$2) whose stored bitcoin rows carry another block reward,
-- or another difficulty, than is in force for them now.
local STALE_DATES = [[
  SELECT h.settlement_date::text AS d FROM (
    SELECT settlement_date, min(block_reward) AS lo, max(block_reward) AS hi, min(difficulty) AS dlo,
           max(difficulty) AS dhi
    FROM historical_bitcoin_calculations WHERE settlement_date BETWEEN $1::date AND $2::date
    GROUP BY settlement_date) h
  LEFT JOIN LATERAL (SELECT difficulty FROM bitcoin_difficulty WHERE effective_date <= h.settlement_date
                     ORDER BY effective_date DESC LIMIT 1) f ON true
  WHERE h.lo <> %s OR h.hi <> h.lo OR h.dlo IS DISTINCT FROM f.difficulty OR h.dhi <> h.dlo
  ORDER BY 1]]

--- Recompute the bitcoin of the stored dates in from..to (all when nil) --
-- or, with stale, only of those whose stored reward or difficulty is no
-- longer what lua/quarry/defs/mining.lua and bitcoin_difficulty give: after
-- a halving is added to the definitions, exactly the dates from it onward.
function M.recalculate_range(db, cache, from, to, stale)
  local _, info = require("quarry.write").dated(db, cache,
    { tables = { "historical_bitcoin_calculations" }, bitcoin = true, long = true }, function(tx, wr)
      local dates = {}
      local sql = stale and STALE_DATES:format(M.reward_sql("h.settlement_date")) or DATES
      for _, r in ipairs(tx:query(sql, from or "0001-01-01", to or "9999-12-31")) do dates[#dates + 1] = r.d end
      wr:dates(dates)
    end)
  return info
end

return M
