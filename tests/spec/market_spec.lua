-- lua/quarry/market.lua, plugins/value.lua and the market checks of
-- plugins/integrity.lua: prices and difficulty from files and from local
-- stand-ins of the public sources (tests/tools/api_server.py); value
-- figures checked against SQL written here from the raw bitcoin rows.
local h = require "spec.helper"
local cjson = require "cjson"

local db = require("quarry").db
local ENV = { QUARRY_CACHE_PREFIX = "market-spec:", QUARRY_FETCH_BACKOFF = "20", QUARRY_FETCH_TIMEOUT = "2" }

-- 2036-05 (a year no other spec uses): four days of curtailment, difficulty from 2036-05-01.
local ROWS = {
  "2036-05-02,40,T_SGRWO-1,Seagreen Wind Energy Limited,-100,-500,-5,-5,true,false",
  "2036-05-02,41,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false",
  "2036-05-03,10,T_SGRWO-1,Seagreen Wind Energy Limited,-300,-3000,-10,-10,true,false",
  "2036-05-20,22,T_DOREW-1,Dorenell Windfarm Limited,-50,-4000,-80,-80,true,false",
  "2036-05-21,22,T_DOREW-1,Dorenell Windfarm Limited,-5,-400,-80,-80,true,false",
}
local DAYS = { "2036-05-02", "2036-05-03", "2036-05-20", "2036-05-21" }

local function quarry(args, extra)
  local env = {}
  for k, v in pairs(ENV) do env[k] = v end
  for k, v in pairs(extra or {}) do env[k] = v end
  return h.quarry(args, env)
end

local function csv(lines) return h.write(h.tmpname(".csv"), table.concat(lines, "\n") .. "\n") end

local function price_of(d) return db:query_one("SELECT gbp_per_btc::text AS p FROM bitcoin_prices WHERE price_date = $1", d) end

setup(function()
  require("quarry.migrate").up(db)
  db:exec("DELETE FROM curtailment_records WHERE settlement_date BETWEEN '2036-01-01' AND '2036-12-31'")
  db:exec("DELETE FROM bitcoin_prices WHERE price_date BETWEEN '2036-01-01' AND '2036-12-31'")
  db:exec("DELETE FROM bitcoin_difficulty WHERE effective_date BETWEEN '2036-01-01' AND '2036-12-31'")
  db:exec("INSERT INTO bitcoin_difficulty VALUES ('2036-05-01', 120e12)")
  h.ingest_rows(ROWS, ENV)
end)

describe("quarry ingest price", function()
  it("loads GBP prices, and refuses bad ones naming the line, changing nothing", function()
    local _, err, code = quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-02,50000", "2036-05-03,51000.5",
      "2036-05-20,48000", "2036-05-21,47000" }))
    assert.are.equal(0, code, err)
    assert.are.equal("51000.5", price_of("2036-05-03").p)
    for _, c in ipairs({
      { { "date,gbp_per_btc", "2036-05-02,-3" }, ":2: gbp_per_btc '%-3' is not a positive number" },
      { { "date,gbp_per_btc", "2036-05-02,0x10" }, ":2: gbp_per_btc '0x10' is not a positive number" },
      { { "date,gbp_per_btc", "2036-05-02,inf" }, ":2: gbp_per_btc 'inf' is not a positive number" },
      { { "date,gbp_per_btc", "2036-05-02,5}" }, ":2: gbp_per_btc '5}' is not a positive number" },
      { { "date,gbp_per_btc", "2036-05-32,3" }, ":2: date '2036%-05%-32'" },
      { { "date,gbp_per_btc", "2036-05-02,1", "2036-05-02,2" }, ":3: date 2036%-05%-02 appears twice" },
      { { "date,gbp_per_btc", "2036-05-02,1e12" }, "is implausible" },
      { { "date,price", "2036-05-02,1" }, ":1: expected the header date,gbp_per_btc or date,usd_per_btc" },
    }) do
      local out
      out, err, code = quarry("ingest price " .. csv(c[1]))
      assert.are.equal(2, code, out)
      assert.matches(c[2], err)
    end
    assert.are.equal("50000", price_of("2036-05-02").p)
  end)

  it("converts USD prices with a rate for each day, refusing a day with none (never a fixed rate)", function()
    local usd = csv({ "date,usd_per_btc", "2036-06-01,60000", "2036-06-02,61000" })
    local _, err, code = quarry(("ingest price %s --usd-gbp %s"):format(usd,
      csv({ "date,gbp_per_usd", "2036-06-01,0.8" })))
    assert.are.equal(2, code)
    assert.matches("no USD to GBP rate for 2036%-06%-02", err)
    assert.is_nil(price_of("2036-06-01"))
    _, err, code = quarry("ingest price " .. usd)
    assert.are.equal(2, code)
    assert.matches("need %-%-usd%-gbp", err)
    _, err, code = quarry(("ingest price %s --usd-gbp %s"):format(usd,
      csv({ "date,gbp_per_usd", "2036-06-01,0.8", "2036-06-02,0.75" })))
    assert.are.equal(0, code, err)
    assert.are.equal("48000.00", price_of("2036-06-01").p)
    assert.are.equal("45750.00", price_of("2036-06-02").p)
  end)
end)

describe("the value report", function()
  setup(function()
    quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-02,50000", "2036-05-03,51000.5",
      "2036-05-20,48000", "2036-05-21,47000" }))
  end)

  it("values each day's bitcoin at that day's price, beside the payment; figures match SQL over the raw rows", function()
    local out, err, code = quarry("report value --month 2036-05 --miner S9 --format json --no-cache")
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    assert.are.equal(4, #r.rows)
    for _, row in ipairs(r.rows) do
      row.date = row.settlement_date
      local want = db:query_one([[SELECT sum(h.bitcoin_mined * p.gbp_per_btc) AS value,
          (SELECT sum(abs(payment)) FROM curtailment_records WHERE settlement_date = $1) AS paid
        FROM historical_bitcoin_calculations h JOIN bitcoin_prices p ON p.price_date = h.settlement_date
        WHERE h.settlement_date = $1 AND h.miner_model = 'S9']], row.date)
      local same = db:query_one([[SELECT round($1::numeric, 2) = $2::numeric AS v, $3::numeric = $4::numeric AS p,
        round($2::numeric - $4::numeric, 2) = $5::numeric AS d]], want.value, row.value_gbp, want.paid, row.paid_gbp,
        row.difference_gbp)
      assert.are.same({ v = true, p = true, d = true }, { v = same.v, p = same.p, d = same.d })
      assert.are.equal(tonumber(row.value_gbp) > tonumber(row.paid_gbp), row.mining_wins)
    end
    local total = db:query_one([[SELECT round(sum(h.bitcoin_mined * p.gbp_per_btc), 2)::text AS value
      FROM historical_bitcoin_calculations h JOIN bitcoin_prices p ON p.price_date = h.settlement_date
      WHERE h.settlement_date BETWEEN '2036-05-01' AND '2036-05-31' AND h.miner_model = 'S9']]).value
    assert.is_true(db:query_one("SELECT $1::numeric = $2::numeric AS s", total, r.totals.value_gbp).s)
    -- by farm: each day's bitcoin at its own price, summed per farm
    out = quarry("report value --month 2036-05 --by farm --format json --no-cache")
    local farms = cjson.decode(out)
    for _, row in ipairs(farms.rows) do
      local want = db:query_one([[SELECT round(sum(h.bitcoin_mined * p.gbp_per_btc), 2)::text AS v
        FROM historical_bitcoin_calculations h JOIN bitcoin_prices p ON p.price_date = h.settlement_date
        WHERE h.farm_id = $1 AND h.miner_model = 'S19J_PRO'
          AND h.settlement_date BETWEEN '2036-05-01' AND '2036-05-31']], row.farm_id).v
      assert.is_true(db:query_one("SELECT $1::numeric = $2::numeric AS s", want, row.value_gbp).s, row.farm_id)
    end
  end)

  it("by month over a year: each month the sum of its days at their own prices", function()
    local out, err, code = quarry("report value --year 2036 --by month --miner S9 --format json --no-cache")
    assert.are.equal(0, code, err)
    local may
    for _, row in ipairs(cjson.decode(out).rows) do if row.month == "2036-05" then may = row end end
    local want = db:query_one([[SELECT round(sum(h.bitcoin_mined * p.gbp_per_btc), 2)::text AS v
      FROM historical_bitcoin_calculations h JOIN bitcoin_prices p ON p.price_date = h.settlement_date
      WHERE h.settlement_date BETWEEN '2036-05-01' AND '2036-05-31' AND h.miner_model = 'S9']]).v
    assert.is_true(db:query_one("SELECT $1::numeric = $2::numeric AS s", want, may.value_gbp).s)
  end)

  it("gives the other reports value columns once every day has its price, and none before", function()
    local out, err, code = quarry("report monthly --month 2036-05 --format json --no-cache")
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    local want = db:query_one([[SELECT round(sum(h.bitcoin_mined * p.gbp_per_btc), 2)::text AS v
      FROM historical_bitcoin_calculations h JOIN bitcoin_prices p ON p.price_date = h.settlement_date
      WHERE h.settlement_date = '2036-05-03' AND h.miner_model = 'S19J_PRO']]).v
    local day
    for _, row in ipairs(r.rows) do if row.settlement_date == "2036-05-03" then day = row end end
    assert.is_true(db:query_one("SELECT $1::numeric = $2::numeric AS s", want, day.value_gbp_S19J_PRO).s)
    out = quarry("report farms --month 2036-05 --format json --no-cache")
    assert.is_not_nil(cjson.decode(out).rows[1].value_gbp_S19J_PRO)
    db:exec("DELETE FROM bitcoin_prices WHERE price_date = '2036-05-21'")
    out = quarry("report monthly --month 2036-05 --format json --no-cache")
    quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-21,47000" }))
    assert.is_nil(cjson.decode(out).rows[1].value_gbp_S19J_PRO) -- a partial value would read as a smaller one
  end)

  it("refuses a period with a curtailed day that has no price, naming it", function()
    db:exec("DELETE FROM bitcoin_prices WHERE price_date = '2036-05-20'")
    local _, err, code = quarry("report value --month 2036-05 --no-cache")
    quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-20,48000" }))
    assert.are.equal(2, code)
    assert.matches("no bitcoin price for 2036%-05%-20 %(load them", err)
  end)

  it("is cached, and a new price for a day is served at once (the write invalidates it)", function()
    local first = quarry("report value --month 2036-05 --format csv")
    assert.are.equal(first, (quarry("report value --month 2036-05 --format csv")))
    quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-21,94000" }))
    local after = quarry("report value --month 2036-05 --format csv")
    assert.are_not.equal(first, after)
    assert.are.equal(after, (quarry("report value --month 2036-05 --format csv --no-cache")))
    quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-21,47000" }))
  end)
end)

describe("quarry fetch price and fetch difficulty", function()
  local root
  setup(function()
    root = h.tmpname(".market")
    os.execute("mkdir -p " .. root .. "/api/v1/mining " .. root .. "/api/v3/coins/bitcoin/market_chart")
  end)
  teardown(function() os.execute("rm -rf " .. root) end)

  local function ms(date, hour) -- unix ms of a UTC date and hour
    return (db:query_one("SELECT extract(epoch FROM ($1::date + make_interval(hours => $2)) AT TIME ZONE 'UTC')::bigint "
      .. "AS s", date, hour).s) * 1000
  end

  it("takes each day's last sample in GBP, through a 503 and a 429; refuses a day with none", function()
    h.write(root .. "/api/v3/coins/bitcoin/market_chart/range.json", cjson.encode({ prices = {
      { ms("2036-07-01", 0), 40000 }, { ms("2036-07-01", 23), 41000.25 },
      { ms("2036-07-02", 12), 42000 }, { ms("2036-07-03", 1), 43000 } } }))
    local server = h.api_server(root, { ["/api/v3/coins/bitcoin/market_chart/range"] = { "503", "429:1" } }, "/api/v3")
    finally(server.stop)
    local out, err, code = quarry("fetch price --from 2036-07-01 --to 2036-07-03", { QUARRY_PRICE_URL = server.url })
    assert.are.equal(0, code, err)
    assert.matches("stored 3 daily prices", out)
    assert.are.same({ "41000.25", "42000.00", "43000.00" }, { price_of("2036-07-01").p, price_of("2036-07-02").p,
      price_of("2036-07-03").p })
    out, err, code = quarry("fetch price --from 2036-07-01 --to 2036-07-05", { QUARRY_PRICE_URL = server.url })
    assert.are.equal(2, code, out)
    assert.matches("no price for 2036%-07%-04, 2036%-07%-05; nothing stored", err)
  end)

  it("loads difficulty adjustments and recalculates exactly the dates whose difficulty changes", function()
    -- 2036-05-21 gets a new difficulty; the days before keep theirs
    local adj = { { ms("2036-05-21", 6) / 1000, 900000, 150e12, 25.0 }, { ms("2036-04-01", 6) / 1000, 898000, 90e12, 1 } }
    h.write(root .. "/api/v1/mining/difficulty-adjustments.json", cjson.encode(adj))
    local server = h.api_server(root, { ["/api/v1/mining/difficulty-adjustments"] = { "reset", "truncate" } }, "/api")
    finally(server.stop)
    local before = {}
    for _, d in ipairs(DAYS) do
      before[d] = db:query_one("SELECT max(calculated_at)::text AS t FROM historical_bitcoin_calculations "
        .. "WHERE settlement_date = $1", d).t
    end
    local out, err, code = quarry("fetch difficulty --from 2036-05-01 --to 2036-05-31",
      { QUARRY_DIFFICULTY_URL = server.url })
    assert.are.equal(0, code, err)
    assert.matches("stored 1 difficulty point; bitcoin recalculated for 1 date", out)
    for _, d in ipairs(DAYS) do
      local r = db:query_one("SELECT max(calculated_at)::text AS t, min(difficulty)::text AS diff FROM "
        .. "historical_bitcoin_calculations WHERE settlement_date = $1", d)
      if d == "2036-05-21" then
        assert.are_not.equal(before[d], r.t)
        assert.is_true(db:query_one("SELECT $1::numeric = 150e12 AS s", r.diff).s)
      else
        assert.are.equal(before[d], r.t, d)
      end
    end
    -- without --from: every adjustment the source has up to --to (here the April one too)
    out, err, code = quarry("fetch difficulty --to 2036-12-31", { QUARRY_DIFFICULTY_URL = server.url })
    assert.are.equal(0, code, err)
    assert.matches("stored 2 difficulty points", out)
    db:exec("DELETE FROM bitcoin_difficulty WHERE effective_date IN ('2036-05-21', '2036-04-01')")
    quarry("miners recalculate --from 2036-05-21 --to 2036-05-21")
  end)
end)

describe("a halving added to the definitions", function()
  it("recalculates exactly the dates from it on (miners recalculate --stale)", function()
    local script = h.write(h.tmpname(".lua"), [[
local quarry = require "quarry"
local defs = require "quarry.defs.mining"
defs.rewards[#defs.rewards + 1] = { from = "2036-05-20", btc = "1.5625" }
local info = require("quarry.mining").recalculate_range(quarry.db, quarry.cache, "2036-05-01", "2036-05-31", true)
print(table.concat(info.dates, ","))
]])
    local out, err, code = quarry("run " .. script)
    os.remove(script)
    assert.are.equal(0, code, err)
    assert.are.equal("2036-05-20,2036-05-21\n", out)
    assert.are.equal("1.5625", db:query_one([[SELECT min(block_reward)::text AS r FROM historical_bitcoin_calculations
      WHERE settlement_date = '2036-05-20']]).r)
    assert.are.equal("3.125", db:query_one([[SELECT min(block_reward)::text AS r FROM historical_bitcoin_calculations
      WHERE settlement_date = '2036-05-03']]).r)
    -- back to the definitions as shipped: the same command mends exactly those dates
    out, err, code = quarry("miners recalculate --stale --from 2036-05-01 --to 2036-05-31")
    assert.are.equal(0, code, err)
    assert.matches("on 2 date%(s%)", out)
  end)
end)

describe("the integrity report's market checks", function()
  it("lists curtailed days with no price, and a price that moves implausibly", function()
    db:exec("DELETE FROM bitcoin_prices WHERE price_date = '2036-05-02'")
    quarry("ingest price " .. csv({ "date,gbp_per_btc", "2036-05-22,140000" })) -- from 47,000 the day before
    local out = quarry("report integrity --month 2036-05 --format csv --no-cache")
    assert.matches("dates with curtailment and no price [(]value reports refuse them[)][^\n]*,2036%-05%-02,", out)
    assert.matches("prices that move more than 50%% in a day[^\n]*,2036%-05%-22,47000 %-> 140000 GBP", out)
    assert.is_nil(out:find("2036%-05%-03,quarry fetch price"))
  end)
end)
