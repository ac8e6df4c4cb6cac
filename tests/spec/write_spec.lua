-- lua/quarry/write.lua: the one dated-write path, as a script uses it.
local h = require "spec.helper"
local quarry = require "quarry"
local cjson = require "cjson"

local db = quarry.db
local write = require "quarry.write"
local DAY = "2033-09-04"
local ENV = { QUARRY_CACHE_PREFIX = "write-spec:" }

local function monthly_mwh()
  local out, err, code = h.quarry("report monthly --month 2033-09 --format json", ENV)
  assert(code == 0, err)
  return tonumber(cjson.decode(out).totals.curtailed_mwh)
end

setup(function()
  require("quarry.migrate").up(db)
  db:exec("INSERT INTO bitcoin_difficulty VALUES ('2033-09-01', 100e12) ON CONFLICT (effective_date) DO NOTHING")
  local path = h.curtailment_csv({ DAY .. ",30,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false" })
  local _, err, code = h.quarry("ingest curtailment " .. path, ENV)
  os.remove(path)
  assert(code == 0, err)
end)

describe("write.dated", function()
  it("takes a script's change through bitcoin, rollups, the durable invalidation and the cache", function()
    assert.are.equal(20, monthly_mwh())
    assert.are.equal(20, monthly_mwh()) -- cached now
    local cache = require("quarry.cache").new({ url = h.urls().REDIS_URL, prefix = ENV.QUARRY_CACHE_PREFIX,
      log = require("quarry.stale").log(function() return db end) })
    local before = db:query_one("SELECT coalesce(max(seq), 0) AS s FROM quarry_cache_invalidations").s
    local answer, info = write.dated(db, cache, { tables = { "curtailment_records" } }, function(tx, w)
      tx:exec("UPDATE curtailment_records SET volume = -50, payment = -4000 WHERE settlement_date = $1", DAY)
      w:dates({ DAY })
      return 42
    end)
    assert.are.equal(42, answer)
    assert.are.same({ DAY }, info.dates)
    assert.are.equal(3, info.bitcoin_rows) -- one farm-period, three miner models
    assert.are.equal("50", db:query_one([[SELECT curtailed_energy::text AS e FROM historical_bitcoin_calculations
      WHERE settlement_date = $1 AND miner_model = 'S9']], DAY).e:match("^50"))
    assert.is_true(db:query_one("SELECT coalesce(max(seq), 0) AS s FROM quarry_cache_invalidations").s > before)
    local _, err, code = h.quarry("rollup verify --date " .. DAY, ENV)
    assert.are.equal(0, code, err)
    assert.are.equal(50, monthly_mwh()) -- no stale figure
  end)

  it("inside an open transaction: one savepoint, nothing committed until the caller commits", function()
    local ok, err = db:transaction(function(tx)
      write.dated(tx, nil, { tables = { "curtailment_records" } }, function(t, w)
        t:exec("UPDATE curtailment_records SET volume = -70 WHERE settlement_date = $1", DAY)
        w:dates({ DAY })
      end)
      error("the caller changes its mind")
    end)
    assert.is_false(ok)
    assert.matches("changes its mind", tostring(err))
    assert.are.equal(50, monthly_mwh())
  end)

  it("refuses a date that is not one", function()
    assert.has_error(function()
      write.dated(db, nil, { tables = { "curtailment_records" } }, function(_, w) w:dates({ "2033-02-30" }) end)
    end)
  end)
end)
