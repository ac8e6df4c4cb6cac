-- lua/quarry/seed.lua through `quarry db seed`, and the reports on seeded
-- data checked against independent SQL over the raw rows.
local h = require "spec.helper"
local quarry = require "quarry"
local cjson = require "cjson"

local db = quarry.db
local FROM, TO = "2023-02-01", "2023-02-28"

local function json_report(args)
  local out, err, code = h.quarry(args .. " --format json --no-cache")
  assert(code == 0, err)
  return cjson.decode(out)
end

describe("seed", function()
  setup(function()
    local out, err, code = h.quarry(("db seed --from %s --to %s"):format(FROM, TO))
    assert(code == 0, err)
    assert(out:match("seeded"), out)
  end)

  it("is deterministic and realistic", function()
    local a = db:query_one([[SELECT count(*) AS n, sum(volume)::text AS v FROM curtailment_records
      WHERE settlement_date BETWEEN $1 AND $2]], FROM, TO)
    local out, err, code = h.quarry(("db seed --from %s --to %s"):format(FROM, TO))
    assert.are.equal(0, code, err)
    -- the second seed finds every date stored as generated, and says so (not "0 bitcoin rows"); its
    -- dates are every day of the range, the calm ones too (loaded, with no curtailment)
    local dates = db:query_one("SELECT ($2::date - $1::date + 1)::int AS n", FROM, TO).n
    assert.matches((" on %d date%%(s%%), %d of them unchanged, 0 bitcoin row%%(s%%) computed"):format(dates, dates), out)
    local b = db:query_one([[SELECT count(*) AS n, sum(volume)::text AS v FROM curtailment_records
      WHERE settlement_date BETWEEN $1 AND $2]], FROM, TO)
    assert.are.same(a, b)
    local r = db:query_one([[SELECT
        sum(abs(volume)) FILTER (WHERE settlement_period BETWEEN 39 AND 48) / sum(abs(volume)) AS evening,
        avg(original_price) FILTER (WHERE farm_id = 'T_DOREW-1') AS onshore_price,
        avg(original_price) FILTER (WHERE farm_id LIKE 'T_SGRWO-%') AS seagreen_price,
        max(abs(volume)) AS biggest,
        count(*) FILTER (WHERE (settlement_date, settlement_period, farm_id) IN (
          SELECT settlement_date, settlement_period, farm_id FROM curtailment_records
          WHERE settlement_date BETWEEN $1 AND $2 GROUP BY 1, 2, 3 HAVING count(*) > 1)) AS multi
      FROM curtailment_records WHERE settlement_date BETWEEN $1 AND $2]], FROM, TO)
    assert.is_true(tonumber(r.evening) > 0.25, r.evening)           -- periods 39-48 are a fifth of the day
    assert.is_true(tonumber(r.onshore_price) < -69 and tonumber(r.onshore_price) > -91)
    assert.is_true(tonumber(r.seagreen_price) > -20 and tonumber(r.seagreen_price) < -1)
    assert.is_true(tonumber(r.biggest) <= 316 * 0.5)                -- capacity x 0.5 per period
    assert.is_true(r.multi > 0)                                     -- several acceptances per farm-period
    assert.are.equal(0, db:query_one([[SELECT count(*) AS n FROM curtailment_records c
      WHERE settlement_date BETWEEN $1 AND $2 AND abs(payment - abs(volume) * original_price) > 0.01]],
      FROM, TO).n)                                                  -- payment = |volume| x price
  end)

  it("gives monthly, daily and yearly figures equal to SQL over the raw rows", function()
    local r = json_report("report monthly --month 2023-02")
    for _, row in ipairs(r.rows) do
      local direct = db:query_one([[SELECT coalesce(sum(abs(volume)), 0) AS mwh,
          coalesce(sum(abs(payment)), 0) AS paid, count(DISTINCT farm_id) AS farms FROM curtailment_records
          WHERE settlement_date = $1]], row.settlement_date)
      assert.are.equal(tonumber(direct.mwh), row.curtailed_mwh, row.settlement_date)
      assert.are.equal(tonumber(direct.paid), row.paid_gbp, row.settlement_date)
      assert.are.equal(direct.farms, row.farms, row.settlement_date)
      local btc = db:query_one([[SELECT coalesce(sum(bitcoin_mined), 0) AS b FROM historical_bitcoin_calculations
        WHERE settlement_date = $1 AND miner_model = 'S9']], row.settlement_date).b
      assert.are.equal(tonumber(btc), row.btc_S9, row.settlement_date)
    end
    local first
    for _, row in ipairs(r.rows) do if not first and row.curtailed_mwh > 0 then first = row end end
    local d = json_report("report daily --date " .. first.settlement_date)
    local sum = 0
    for _, row in ipairs(d.rows) do sum = sum + row.curtailed_mwh end
    assert.is_true(math.abs(sum - first.curtailed_mwh) < 1e-6)
    local y = json_report("report yearly --year 2023")
    local feb
    for _, row in ipairs(y.rows) do if row.month == "2023-02" then feb = row end end
    local direct = db:query_one([[SELECT sum(abs(volume)) AS mwh FROM curtailment_records
      WHERE settlement_date BETWEEN $1 AND $2]], FROM, TO)
    assert.are.equal(tonumber(direct.mwh), feb.curtailed_mwh)
    -- every farm-period has its bitcoin rows, with the reward of 2023
    local i = json_report("report integrity --month 2023-02")
    for _, row in ipairs(i.rows) do assert.not_matches("bitcoin", row.problem) end
  end)
end)

describe("a seed stopped part-way", function()
  local url, sdb
  setup(function() url, sdb = h.scratch_database("seed_stopped") end)
  teardown(function()
    sdb:close()
    h.drop_database("seed_stopped")
  end)

  local function stop_after(signal, secs)
    local out = h.tmpname(".out")
    local pidfile = h.tmpname(".pid")
    os.execute(("DATABASE_URL=%s %s db seed --from 2022-01-01 --to 2025-12-31 >%s 2>&1 </dev/null & "
      .. "echo $! >%s; sleep %s; kill -%s $(cat %s); wait $(cat %s); echo \"rc=$?\" >>%s"):format(
      h.shell_quote(url), h.shell_quote(h.bin), out, pidfile, secs, signal, pidfile, pidfile, out))
    local text = h.read(out) or ""
    os.remove(out)
    os.remove(pidfile)
    return text
  end

  local function nothing_kept()
    for _, t in ipairs({ "bitcoin_difficulty", "curtailment_records", "historical_bitcoin_calculations",
                         "curtailment_loaded_days" }) do -- no day marked loaded without its rows
      local r = sdb:query_one(("SELECT to_regclass(%s) IS NULL OR (SELECT count(*) = 0 FROM %s) AS empty")
        :format("'" .. t .. "'", t))
      assert.is_true(r.empty, t .. " holds rows of the stopped seed")
    end
  end

  it("by Ctrl-C: one line, exit 130, nothing committed", function()
    assert.are.equal(0, select(3, h.quarry("db migrate", { DATABASE_URL = url })))
    local text = stop_after("INT", 2.5)
    assert.matches("quarry: interrupted; nothing was committed\n", text)
    assert.matches("rc=130", text)
    nothing_kept()
  end)

  it("by kill -9: no difficulty without its curtailment, no temporary file left", function()
    local before = io.popen("ls /tmp | wc -l"):read("a")
    local text = stop_after("KILL", 2.5)
    assert.matches("rc=137", text)
    nothing_kept()
    local after = io.popen("ls /tmp | wc -l"):read("a")
    assert.are.equal(before, after)
  end)
end)

