-- How much bitcoin one MWh of curtailed wind could mine, per miner model, at
-- the public difficulty points from 2022 to 2025 -- and the domain check:
-- 99,864.95 MWh on 2025-03-28 at D = 113,757,508,810,853 is 75.39 BTC on an
-- S19J_PRO.
--
--   quarry db migrate && quarry run examples/mining-yield.lua [MWH]
local quarry = require "quarry"
local cjson = require "cjson"
local db = quarry.db

require("quarry.migrate").require_current(db)
local mwh = arg[1] or "1"
if not mwh:match("^%d+%.?%d*$") then -- bound as numeric: refused here in one line, not by PostgreSQL
  error(("usage: quarry run examples/mining-yield.lua [MWH], MWH a number of MWh, got '%s'"):format(mwh), 0)
end

local points = { -- {date, difficulty in T}, from shared domain facts
  { "2022-01-01", 24.27 }, { "2022-05-11", 31.25 }, { "2022-09-14", 32.05 }, { "2023-01-01", 35.36 },
  { "2023-12-23", 72.01 }, { "2024-01-06", 73.20 }, { "2024-02-15", 81.73 }, { "2024-04-11", 86.39 },
  { "2024-04-20", 86.39 }, { "2024-10-23", 95.67 }, { "2024-11-05", 101.65 }, { "2024-12-30", 109.78 },
  { "2025-01-12", 110.45 }, { "2025-03-10", 112.15 }, { "2025-03-23", 113.76 },
}
local json = {}
for i, p in ipairs(points) do json[i] = { d = p[1], t = p[2] } end

-- Everything is computed by PostgreSQL in numeric; the points travel as one
-- bound jsonb parameter, never spliced into the SQL.
local YIELD = {
  name = "mining_yield",
  sql = [[
    WITH points AS (
      SELECT d::date AS day, (t::numeric * 1e12) AS difficulty
      FROM jsonb_to_recordset($1::jsonb) AS x(d text, t text)
    )
    SELECT to_char(p.day, 'YYYY-MM-DD') AS day,
           round(p.difficulty / 1e12, 2) AS difficulty_t,
           CASE WHEN p.day < DATE '2024-04-20' THEN 6.25 ELSE 3.125 END AS reward,
           m.name AS miner,
           round($2::numeric * 3.6e9 / m.power_watts * m.hashrate_th * 1e12
                 / (p.difficulty * 4294967296)
                 * CASE WHEN p.day < DATE '2024-04-20' THEN 6.25 ELSE 3.125 END, 8) AS btc
    FROM points p CROSS JOIN miner_models m
    ORDER BY p.day, m.name]],
}

local rows = quarry.timed("yield report", function() return db:query(YIELD, cjson.encode(json), mwh) end)

local miners, by_day, days = {}, {}, {}
for _, r in ipairs(rows) do
  if not by_day[r.day] then
    by_day[r.day] = { difficulty = r.difficulty_t, reward = r.reward }
    days[#days + 1] = r.day
  end
  by_day[r.day][r.miner] = r.btc
  if not miners[r.miner] then miners[r.miner] = true; miners[#miners + 1] = r.miner end
end

print(("BTC mined by %s MWh of curtailed energy, by difficulty in force"):format(mwh))
local head = ("%-10s %10s %7s"):format("date", "diff (T)", "reward")
for _, m in ipairs(miners) do head = head .. ("%14s"):format(m) end
print(head)
for _, d in ipairs(days) do
  local line = ("%-10s %10s %7s"):format(d, by_day[d].difficulty, by_day[d].reward)
  for _, m in ipairs(miners) do line = line .. ("%14s"):format(by_day[d][m]) end
  print(line)
end

-- The domain check, inside a read-only transaction to show the API.
local ok, check = db:transaction(function(tx)
  return tx:query_one([[
    SELECT round($1::numeric * 3.6e9 / power_watts * hashrate_th * 1e12 / ($2::numeric * 4294967296) * 3.125, 2)
           AS btc
    FROM miner_models WHERE name = $3]], "99864.95", "113757508810853", "S19J_PRO")
end, { read_only = true })
assert(ok, check)
print(("\ncheck: 99,864.95 MWh on 2025-03-28 -> %s BTC on an S19J_PRO (domain facts: 75.39)"):format(check.btc))

local s = db:stats()
print(("pool: %d connection(s) opened, %d idle, %d in use"):format(s.created, s.idle, s.in_use))
