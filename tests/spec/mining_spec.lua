-- lua/quarry/mining.lua through `quarry miners`: a model added by command
-- has its bitcoin for every stored date, checked against the formula in
-- independent SQL, and every report shows it at once (no stale cache).
local h = require "spec.helper"
local cjson = require "cjson"

local NAME = "quarry_mining_spec"
local url, db
local ENV

local function q(args) return h.quarry(args, ENV) end

setup(function()
  url, db = h.seeded_database(NAME, "2024-03-01", "2024-03-10")
  ENV = { DATABASE_URL = url, QUARRY_CACHE_PREFIX = "mining-spec:" }
end)

teardown(function()
  db:close()
  h.drop_database(NAME)
end)

describe("quarry miners", function()
  it("lists the models", function()
    local out, err, code = q("miners")
    assert.are.equal(0, code, err)
    assert.matches("S19J_PRO%s+100%s+3050%s+30.50", out)
  end)

  it("adds a model with its bitcoin on every stored date, shown by reports at once", function()
    local before = cjson.decode((q("report monthly --month 2024-03 --format json")))
    assert.is_nil(before.rows[1].btc_S21_PRO)
    local _, out, err, code
    out, err, code = q("miners add S21_PRO --hashrate-th 234 --watts 3510 --description 'Antminer S21 Pro'")
    assert.are.equal(0, code, err)
    local dates = db:query_one("SELECT count(DISTINCT settlement_date) AS n FROM curtailment_records").n
    assert.matches(("on %d date%%(s%%)"):format(dates), out)
    -- every farm-period has its row, equal to the formula computed here
    local r = db:query_one([[
      SELECT count(*) AS n,
             count(*) FILTER (WHERE h.bitcoin_mined <> round(h.curtailed_energy * 3600000000 * 234 * 1e12
               * h.block_reward / (3510 * h.difficulty * 4294967296), 12)) AS wrong
      FROM historical_bitcoin_calculations h WHERE miner_model = 'S21_PRO']])
    local fp = db:query_one([[SELECT count(*) AS n FROM (SELECT DISTINCT settlement_date, settlement_period, farm_id
      FROM curtailment_records) x]]).n
    assert.are.equal(fp, r.n)
    assert.are.equal(0, r.wrong)
    -- the cached report is stale now: the new column is there
    local after = cjson.decode((q("report monthly --month 2024-03 --format json")))
    local mwh = 0
    for _, row in ipairs(after.rows) do
      assert.is_not_nil(row.btc_S21_PRO, row.settlement_date)
      mwh = mwh + (tonumber(row.curtailed_mwh) or 0) -- a day with no data loaded is null
    end
    assert.is_true(mwh > 0)
    _, err, code = q("report monthly --month 2024-03 --miner S21_PRO --format json --no-cache")
    assert.are.equal(0, code, err)
    _, err, code = q("rollup verify")
    assert.are.equal(0, code, err)
  end)

  it("refuses a bad or duplicate model and changes nothing", function()
    local count = db:query_one("SELECT count(*) AS n FROM miner_models").n
    for _, args in ipairs({ "S19J_PRO --hashrate-th 1 --watts 1", "'s21; drop' --hashrate-th 1 --watts 1",
                            "X1 --hashrate-th 0 --watts 100", "X1 --hashrate-th 1e9 --watts 100",
                            "X1 --hashrate-th 10 --watts lots", "X1 --hashrate-th 0x10 --watts 100",
                            "X1 --hashrate-th ' 10' --watts 100" }) do
      local _, err, code = q("miners add " .. args)
      assert.are.equal(2, code, args .. ": " .. err)
    end
    assert.are.equal(count, db:query_one("SELECT count(*) AS n FROM miner_models").n)
  end)

  it("adds a model two processes add at once exactly once: the other is told it exists (exit 2)", function()
    local rc = { h.tmpname(), h.tmpname() }
    local cmd = "DATABASE_URL=%s QUARRY_CACHE_PREFIX=mining-spec: %s miners add S21_XP --hashrate-th 270 "
      .. "--watts 3645 >/dev/null 2>%s; echo $? >>%s"
    local run = {}
    for i = 1, 2 do run[i] = cmd:format(h.shell_quote(url), h.shell_quote(h.bin), rc[i], rc[i]) end
    os.execute(("(%s) & (%s) & wait"):format(run[1], run[2]))
    local outs = { h.read(rc[1]), h.read(rc[2]) }
    table.sort(outs, function(a, b) return #a < #b end)
    assert.are.equal("0\n", outs[1])
    assert.matches("^quarry: miner model S21_XP exists already %(quarry miners lists them%)\n2\n$", outs[2])
    assert.are.equal(1, db:query_one("SELECT count(*)::int AS n FROM miner_models WHERE name = 'S21_XP'").n)
    os.remove(rc[1]); os.remove(rc[2])
  end)

  it("recalculates a range through the write path", function()
    local day = db:query_one("SELECT max(settlement_date)::text AS d FROM curtailment_records").d
    db:exec("UPDATE historical_bitcoin_calculations SET bitcoin_mined = 0 WHERE settlement_date = $1", day)
    local _, out, err, code
    out, err, code = q(("miners recalculate --from %s --to %s"):format(day, day))
    assert.are.equal(0, code, err)
    assert.matches("on 1 date", out)
    assert.are.equal(0, db:query_one([[SELECT count(*) AS n FROM historical_bitcoin_calculations
      WHERE settlement_date = $1 AND bitcoin_mined = 0]], day).n)
    _, err, code = q("rollup verify")
    assert.are.equal(0, code, err)
  end)

  it("rewrites only the bitcoin rows whose figures change, to the digit, and drops those left without energy", function()
    local day = db:query_one("SELECT min(settlement_date)::text AS d FROM curtailment_records").d
    local fps = db:query([[SELECT settlement_period AS p, farm_id AS f FROM curtailment_records
      WHERE settlement_date = $1 GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 3]], day)
    local changed, gone, rescaled = fps[1], fps[2], fps[3]
    local where = "settlement_date = $1 AND settlement_period = $2 AND farm_id = $3"
    db:exec("UPDATE historical_bitcoin_calculations SET calculated_at = '2000-01-01' WHERE settlement_date = $1", day)
    db:exec("UPDATE curtailment_records SET volume = volume * 2 WHERE " .. where, day, changed.p, changed.f)
    db:exec("DELETE FROM curtailment_records WHERE " .. where, day, gone.p, gone.f)
    -- the same value written with more digits: the stored text must match a fresh computation again
    db:exec("UPDATE historical_bitcoin_calculations SET curtailed_energy = round(curtailed_energy, 7) WHERE " .. where,
      day, rescaled.p, rescaled.f)
    local _, err, code = q(("miners recalculate --from %s --to %s"):format(day, day))
    assert.are.equal(0, code, err)
    _, err, code = q("rollup refresh --date " .. day) -- the curtailment changed behind quarry's back
    assert.are.equal(0, code, err)
    local function rows(fp)
      return db:query([[SELECT miner_model, curtailed_energy::text AS e, calculated_at > '2000-01-01' AS rewritten
        FROM historical_bitcoin_calculations WHERE ]] .. where .. " ORDER BY 1", day, fp.p, fp.f)
    end
    local function energy(fp)
      return db:query_one("SELECT sum(abs(volume))::text AS e FROM curtailment_records WHERE " .. where,
        day, fp.p, fp.f).e
    end
    local models = tonumber(db:query_one("SELECT count(*) AS n FROM miner_models").n)
    for _, fp in ipairs({ changed, rescaled }) do
      local got = rows(fp)
      assert.are.equal(models, #got)
      for _, r in ipairs(got) do
        assert.is_true(r.rewritten, r.miner_model)
        assert.are.equal(energy(fp), r.e)
      end
    end
    assert.are.equal(0, #rows(gone))
    local r = db:query_one([[SELECT count(*) FILTER (WHERE calculated_at > '2000-01-01') AS rewritten,
        count(*) AS n FROM historical_bitcoin_calculations WHERE settlement_date = $1]], day)
    assert.are.equal(2 * models, tonumber(r.rewritten)) -- nothing else was written
    local fp = db:query_one([[SELECT count(*) AS n FROM (SELECT DISTINCT settlement_period, farm_id
      FROM curtailment_records WHERE settlement_date = $1) x]], day).n
    assert.are.equal(fp * models, tonumber(r.n))
    _, err, code = q("rollup verify")
    assert.are.equal(0, code, err)
  end)
end)
