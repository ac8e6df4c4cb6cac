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

  it("seeds days past its last public difficulty point, that point's value held every 14 days", function()
    local seed = require "quarry.seed"
    local path = h.tmpname(".csv")
    seed.write_difficulty(path, "2026-11-01", "2026-11-30")
    local points = {}
    for d, v in h.read(path):gmatch("(%d+%-%d+%-%d+),(%d+)") do points[#points + 1] = { d, v } end
    os.remove(path)
    local last = seed.DIFFICULTY_POINTS[#seed.DIFFICULTY_POINTS]
    assert.is_true(#points >= 2)
    assert.is_true(points[1][1] <= "2026-11-01" and points[1][1] >= "2026-10-01", points[1][1])
    for _, p in ipairs(points) do assert.are.equal(("%.0f"):format(last[2] * 1e12), p[2]) end
    local out, err, code = h.quarry("db seed --from 2026-11-01 --to 2026-11-03")
    assert.are.equal(0, code, err) -- it was "no bitcoin difficulty known for 2026-11-01, ..."
    assert.matches("seeded 2026%-11%-01..2026%-11%-03", out)
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

describe("a seed beside real data", function()
  local url, sdb
  local function q(args) return h.quarry(args, { DATABASE_URL = url, QUARRY_CACHE = "off" }) end
  local function csv(lines) return h.write(h.tmpname(".csv"), table.concat(lines, "\n") .. "\n") end
  local HEAD = "settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,original_price,final_price,"
    .. "so_flag,cadl_flag"
  local function curtailment(date)
    return csv({ HEAD, date .. ",20,T_REAL-1,Real Wind Ltd,-10.000,-500.00,-50.00,-50.00,true,false" })
  end
  local function difficulty(date)
    local r = sdb:query_one("SELECT difficulty::text AS d, source FROM bitcoin_difficulty WHERE effective_date = $1",
      date)
    return r.d .. " " .. r.source
  end
  setup(function()
    url, sdb = h.scratch_database("seed_beside_real")
    assert.are.equal(0, select(3, q("db migrate")))
    local _, err, code = q("ingest difficulty " .. csv({ "date,difficulty", "2024-04-01,85000000000000",
      "2024-04-25,90000000000000", "2024-05-10,91000000000000" }))
    assert.are.equal(0, code, err)
    for _, d in ipairs({ "2024-04-20", "2024-05-10" }) do
      _, err, code = q("ingest curtailment " .. curtailment(d))
      assert.are.equal(0, code, err)
    end
  end)
  teardown(function()
    sdb:close()
    h.drop_database("seed_beside_real")
  end)

  local function unchanged()
    local days = {}
    for _, r in ipairs(sdb:query("SELECT settlement_date::text AS d, source FROM curtailment_loaded_days ORDER BY 1")) do
      days[#days + 1] = r.d .. " " .. r.source
    end
    assert.are.same({ "2024-04-20 csv", "2024-05-10 csv" }, days)
    assert.are.equal("90000000000000 csv", difficulty("2024-04-25"))
    assert.are.equal(2, sdb:query_one("SELECT count(*)::int AS n FROM curtailment_records").n)
  end

  it("refuses to replace a day another source loaded, committing nothing", function()
    local _, err, code = q("db seed --from 2024-05-09 --to 2024-05-11")
    assert.are.equal(2, code, err)
    assert.matches("quarry db seed writes synthetic data and would replace 1 day%(s%) loaded by quarry ingest "
      .. "curtailment %(2024%-05%-10%)", err)
    unchanged()
  end)

  it("refuses to replace a day loaded before quarry kept the source: real data too", function()
    h.unseen_write(sdb, "UPDATE curtailment_loaded_days SET source = NULL WHERE settlement_date = '2024-05-10'")
    local _, err, code = q("db seed --from 2024-05-09 --to 2024-05-11")
    h.unseen_write(sdb, "UPDATE curtailment_loaded_days SET source = 'csv' WHERE settlement_date = '2024-05-10'")
    assert.are.equal(2, code, err)
    assert.matches("would replace 1 day%(s%) loaded by an earlier quarry %(before it kept the source%) "
      .. "%(2024%-05%-10%)", err)
    unchanged()
  end)

  it("refuses to change the difficulty in force on a day another source loaded", function()
    -- its point of 2024-04-11 would be in force on 2024-04-20 instead of the loaded one of 2024-04-01
    local _, err, code = q("db seed --from 2024-04-10 --to 2024-04-15")
    assert.are.equal(2, code, err)
    assert.matches("would change the difficulty in force on 1 day%(s%) loaded by quarry ingest curtailment "
      .. "%(2024%-04%-20%)", err)
    unchanged()
  end)

  it("seeds around real data without replacing its difficulty, and reports say which days are synthetic", function()
    -- its points of 2024-04-25 (one is loaded there), 05-09 and 05-23 change no loaded day's difficulty
    local _, err, code = q("db seed --from 2024-05-20 --to 2024-05-24")
    assert.are.equal(0, code, err)
    assert.are.equal("90000000000000 csv", difficulty("2024-04-25")) -- the loaded point kept
    assert.matches(" seed$", difficulty("2024-05-23"))
    assert.are.equal("seed", sdb:query_one([[SELECT source FROM curtailment_loaded_days
      WHERE settlement_date = '2024-05-20']]).source)
    local out
    out, err, code = q("report monthly --month 2024-05 --format json")
    assert.are.equal(0, code, err)
    local c = cjson.decode(out).coverage
    assert.are.same({ { "2024-05-20", "2024-05-24" } }, c.synthetic)
    assert.are.same({ 5, 6, 0 }, { c.synthetic_days, c.loaded, c.seed_difficulty_days })
    assert.matches("quarry: 5 of the 31 days are synthetic data from quarry db seed, not real curtailment "
      .. "%(2024%-05%-20..2024%-05%-24%)", err)
    out = q("report monthly --month 2024-05")
    assert.matches("5 of the 31 days are synthetic data from quarry db seed", out)
  end)

  it("says when real curtailment's bitcoin rests on a seed's difficulty point", function()
    local _, err, code = q("db seed --from 2024-08-01 --to 2024-08-05")
    assert.are.equal(0, code, err)
    _, err, code = q("ingest curtailment " .. curtailment("2024-08-06")) -- its difficulty: the seed's of 2024-08-01
    assert.are.equal(0, code, err)
    local out
    out, err, code = q("report daily --date 2024-08-06 --format json")
    assert.are.equal(0, code, err)
    local c = cjson.decode(out).coverage
    assert.are.same({ { "2024-08-06", "2024-08-06" } }, c.seed_difficulty)
    assert.are.same({ 0, 1 }, { c.synthetic_days, c.seed_difficulty_days })
    assert.matches("the bitcoin of 1 day%(s%) %(2024%-08%-06%) uses quarry db seed's synthetic difficulty; load the "
      .. "real one: quarry fetch difficulty %-%-from 2024%-08%-06 %-%-to 2024%-08%-06", err)
    out, err, code = q("report integrity --month 2024-08 --format csv")
    assert.are.equal(0, code, err)
    assert.matches("\ndates whose bitcoin uses quarry db seed's synthetic difficulty,2024%-08%-06,quarry fetch difficulty "
      .. "%-%-from 2024%-08%-06 %-%-to 2024%-08%-06,1\r?\n", out)
  end)

  it("says in db status what each source loaded", function()
    local out, err, code = q("db status")
    assert.are.equal(0, code, err)
    assert.matches("\nloaded days: csv 3 %(2024%-04%-20..2024%-08%-06%), seed 10 %(2024%-05%-20..2024%-08%-05%)\n", out)
    assert.matches("\ndifficulty points: csv 3 %(2024%-04%-01..2024%-05%-10%), seed %d+ %(", out)
  end)
end)
