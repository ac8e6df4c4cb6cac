-- lua/quarry/defs/summaries.lua against the seed platform's own SQL (its
-- text, with the date written in as the platform did), digit for digit.
local quarry = require "quarry"
local summaries = require "quarry.defs.summaries"
local cjson = require("cjson")

local db = quarry.db

local SEED_DAILY = [[
    WITH daily_curtailment AS (
      SELECT settlement_date, COUNT(DISTINCT settlement_period) as period_count,
        COUNT(DISTINCT farm_id) as farm_count, SUM(ABS(volume)) as total_volume, SUM(payment) as total_payment
      FROM curtailment_records WHERE settlement_date = '%s' GROUP BY settlement_date
    ),
    daily_bitcoin AS (
      SELECT settlement_date, miner_model, COUNT(DISTINCT settlement_period) as period_count,
        SUM(bitcoin_mined) as total_bitcoin, MAX(difficulty) as max_difficulty
      FROM historical_bitcoin_calculations WHERE settlement_date = '%s' GROUP BY settlement_date, miner_model
    )
    SELECT dc.settlement_date, dc.period_count, dc.farm_count, dc.total_volume, dc.total_payment,
      json_agg(json_build_object('minerModel', db.miner_model, 'bitcoinMined', db.total_bitcoin,
        'difficulty', db.max_difficulty)) as miner_data
    FROM daily_curtailment dc LEFT JOIN daily_bitcoin db ON dc.settlement_date = db.settlement_date
    GROUP BY dc.settlement_date, dc.period_count, dc.farm_count, dc.total_volume, dc.total_payment]]

local SEED_MONTHLY = [[
    WITH monthly_curtailment AS (
      SELECT DATE_TRUNC('month', settlement_date) as month, COUNT(DISTINCT settlement_date) as day_count,
        COUNT(DISTINCT settlement_period) as period_count, COUNT(DISTINCT farm_id) as farm_count,
        SUM(ABS(volume)) as total_volume, SUM(payment) as total_payment
      FROM curtailment_records WHERE settlement_date BETWEEN '%s' AND '%s'
      GROUP BY DATE_TRUNC('month', settlement_date)
    ),
    monthly_bitcoin AS (
      SELECT DATE_TRUNC('month', settlement_date) as month, miner_model,
        COUNT(DISTINCT settlement_date) as day_count, SUM(bitcoin_mined) as total_bitcoin,
        AVG(difficulty) as avg_difficulty
      FROM historical_bitcoin_calculations WHERE settlement_date BETWEEN '%s' AND '%s'
      GROUP BY DATE_TRUNC('month', settlement_date), miner_model
    )
    SELECT TO_CHAR(mc.month, 'YYYY-MM') as year_month, mc.day_count, mc.period_count, mc.farm_count,
      mc.total_volume, mc.total_payment,
      json_agg(json_build_object('minerModel', mb.miner_model, 'bitcoinMined', mb.total_bitcoin,
        'avgDifficulty', mb.avg_difficulty)) as miner_data
    FROM monthly_curtailment mc LEFT JOIN monthly_bitcoin mb ON mc.month = mb.month
    GROUP BY mc.month, mc.day_count, mc.period_count, mc.farm_count, mc.total_volume, mc.total_payment]]

-- The json column as text with its miners in a fixed order, every digit kept.
local function miners_text(db_, sql, ...)
  return db_:query_one("SELECT (SELECT json_agg(e ORDER BY e->>'minerModel')::text FROM json_array_elements("
    .. "(" .. sql .. ")::json) e) AS j", ...).j
end

local function same_row(ours, seed, ignore)
  for k, v in pairs(seed) do
    if not ignore[k] then assert.are.equal(v, ours[k], k) end
  end
end

describe("summaries equal the seed platform's SQL", function()
  local dates
  setup(function()
    require("quarry.migrate").up(db)
    dates = db:query([[SELECT DISTINCT settlement_date::text AS d FROM curtailment_records
                       ORDER BY 1 LIMIT 40]])
    assert(#dates > 0, "no data: the ingest and plugins specs load some")
  end)

  it("daily, for every date with data", function()
    for _, r in ipairs(dates) do
      local d = r.d
      local ours = db:query_one({ sql = summaries.daily.sql }, d)
      local seed = db:query_one(SEED_DAILY:format(d, d))
      same_row(ours, seed, { miner_data = true })
      local o = miners_text(db, "SELECT miner_data FROM (" .. summaries.daily.sql .. ") x", d)
      local s = miners_text(db, "SELECT miner_data FROM (" .. SEED_DAILY:format(d, d) .. ") x")
      assert.are.equal(s, o)
      assert.matches("%d%.%d%d%d%d%d%d%d%d", o) -- bitcoin digits travel intact
    end
  end)

  it("monthly, for every month with data", function()
    local months = db:query("SELECT DISTINCT to_char(settlement_date, 'YYYY-MM') AS m FROM curtailment_records")
    for _, r in ipairs(months) do
      local first = r.m .. "-01"
      local last = db:query_one("SELECT (($1::date + interval '1 month') - interval '1 day')::date::text AS l",
        first).l
      local ours = db:query_one({ sql = summaries.monthly.sql }, first)
      local seed = db:query_one(SEED_MONTHLY:format(first, last, first, last))
      same_row(ours, seed, { miner_data = true })
      assert.are.equal(miners_text(db, "SELECT miner_data FROM (" .. SEED_MONTHLY:format(first, last, first, last)
        .. ") x"), miners_text(db, "SELECT miner_data FROM (" .. summaries.monthly.sql .. ") x", first))
    end
  end)

  it("yearly has the monthly shape over a year", function()
    local y = db:query_one("SELECT to_char(min(settlement_date), 'YYYY') AS y FROM curtailment_records").y
    local row = db:query_one({ sql = summaries.yearly.sql }, y .. "-01-01")
    local direct = db:query_one([[SELECT sum(abs(volume)) AS v, count(DISTINCT settlement_date) AS d
      FROM curtailment_records WHERE settlement_date BETWEEN $1::date AND ($1::date + interval '1 year' - interval '1 day')]],
      y .. "-01-01")
    assert.are.equal(y, row.year)
    assert.are.equal(direct.v, row.total_volume)
    assert.are.equal(direct.d, row.day_count)
    assert.is_table(cjson.decode(cjson.encode(row.miner_data)))
  end)
end)
