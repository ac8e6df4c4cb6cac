-- lua/quarry/ingest.lua and lua/quarry/mining.lua: loading CSV, all or
-- nothing, and the bitcoin it computes. Dates used here (2031-2032 and the
-- halving) are cleared first, so the spec owns them.
local h = require "spec.helper"
local quarry = require "quarry"

local db = quarry.db
local csv = h.curtailment_csv

local function ingest(kind, path, env)
  local out, err, code = h.quarry(("ingest %s %s"):format(kind, path), env)
  os.remove(path)
  return out, err, code
end

local function count(sql, ...) return db:query_one(sql, ...).n end

local function clear(from, to)
  db:exec("DELETE FROM curtailment_records WHERE settlement_date BETWEEN $1 AND $2", from, to)
  db:exec("DELETE FROM historical_bitcoin_calculations WHERE settlement_date BETWEEN $1 AND $2", from, to)
  db:exec("DELETE FROM bitcoin_difficulty WHERE effective_date BETWEEN $1::date - 40 AND $2", from, to)
end

setup(function()
  require("quarry.migrate").up(db)
  clear("2031-01-01", "2032-12-31")
  db:exec("DELETE FROM curtailment_loaded_days WHERE settlement_date BETWEEN '2031-01-01' AND '2032-12-31'")
  clear("2024-04-15", "2024-04-25")
  db:exec("INSERT INTO bitcoin_difficulty VALUES ('2031-01-01', 100e12), ('2024-04-11', 86390000000000)")
end)

describe("ingest curtailment", function()
  it("loads rows, computes one bitcoin row per farm-period and miner, summing acceptances", function()
    local path = csv({
      "2031-01-02,40,T_SGRWO-1,Seagreen Wind Energy Limited,-10.5,-52.5,-5,-5,true,false",
      "2031-01-02,40,T_SGRWO-1,Seagreen Wind Energy Limited,-4.25,-21.25,-5,-5,true,",  -- a second acceptance
      "2031-01-02,41,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,t,f",
    })
    local out, err, code = ingest("curtailment", path)
    assert.are.equal(0, code, err)
    assert.matches("loaded 3 curtailment row%(s%) for 1 date%(s%); 6 bitcoin row%(s%)", out)
    assert.are.equal(3, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-02'"))
    local r = db:query_one([[SELECT curtailed_energy, block_reward FROM historical_bitcoin_calculations
      WHERE settlement_date = '2031-01-02' AND settlement_period = 40 AND miner_model = 'S9']])
    assert.are.equal("14.75", r.curtailed_energy) -- both acceptances
    assert.are.equal("3.125", r.block_reward)
    assert.is_nil(err:find("repeat", 1, true)) -- two acceptances of one period are not repeats
  end)

  it("says when rows repeat another exactly (a file holding rows twice), and counts them as it was told", function()
    local row = "2031-01-12,7,T_SGRWO-1,Seagreen Wind Energy Limited,-10,-50,-5,-5,true,false"
    local path = csv({ "2031-01-12,3,T_DOREW-1,Dorenell Windfarm Limited,-2,-160,-80,-80,true,false", row, row, row })
    local out, err, code = ingest("curtailment", path)
    assert.are.equal(0, code, err)
    assert.matches("loaded 4 curtailment row", out)
    assert.matches(":4 repeats line 3 exactly %(and 1 more line%(s%) repeat others%): each is counted", err)
    assert.are.equal(3, count([[SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-12'
      AND settlement_period = 7]]))
  end)

  it("replaces the dates present, and only those", function()
    local path = csv({ "2031-01-03,1,T_FARR-1,Smartestenergy Limited,-1,-80,-80,-80,true,false" })
    assert.are.equal(0, select(3, ingest("curtailment", path)))
    -- a file of one farm's rows of a day the others have rows of: refused, for it would remove them
    local one = { "2031-01-02,5,T_FARR-1,Smartestenergy Limited,-2,-160,-80,-80,true,false" }
    local _, err, code = ingest("curtailment", csv(one))
    assert.are.equal(2, code, err)
    assert.matches("2031%-01%-02 holds 3 stored row%(s%) of 2 farm%(s%) the file has no row of %(T_[%w_-]+, ...%); a "
      .. "load replaces each date whole, so they would go%. If the file is that day whole, say so: %-%-dates 2031%-01%-02; "
      .. "if it holds only its farms' rows, %-%-farms%-only replaces just those", err)
    assert.are.equal(3, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-02'"))
    -- said whole, it is the day
    assert.are.equal(0, select(3, ingest("curtailment --dates 2031-01-02", csv(one))))
    assert.are.equal(1, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-02'"))
    assert.are.equal(1, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-03'"))
    assert.are.equal(3, count([[SELECT count(*) AS n FROM historical_bitcoin_calculations
      WHERE settlement_date = '2031-01-02']]))
  end)

  it("loads from a pipe, whose size is not known (/dev/stdin, <(...))", function()
    local path = csv({ "2031-01-25,1,T_FARR-1,P,-1,-80,-80,-80,true,false",
                       "2031-01-25,2,T_FARR-1,P,-2,-160,-80,-80,true,false" })
    local pipe = assert(io.popen("cat " .. h.shell_quote(path)))
    local r = require("quarry.ingest").curtailment(db, "(pipe)", nil, pipe)
    os.remove(path)
    assert.are.equal(2, r.rows)
    assert.are.equal(2, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-25'"))
  end)

  it("rewrites on a reload only the dates whose rows changed: the others keep their rows, bitcoin and cache", function()
    local rows = {
      "2031-01-20,1,T_FARR-1,P,-1.5,-120,-80,-80,true,false",
      "2031-01-20,2,T_FARR-1,P,-2,-160,-80,-80,true,",
      "2031-01-21,1,T_FARR-1,P,-3,-240,-80,-80,true,false",
      "2031-01-22,1,T_FARR-1,P,-4,-320,-80,-80,true,false",
    }
    local out, err, code = ingest("curtailment", csv(rows))
    assert.are.equal(0, code, err)
    assert.matches("for 3 date%(s%); 12 bitcoin row%(s%)", out)
    local function state(d) -- the ids of a date's rows, and when its bitcoin was last computed
      return db:query_one([[SELECT
        (SELECT string_agg(id::text, ',' ORDER BY id) FROM curtailment_records WHERE settlement_date = $1) AS rows,
        (SELECT max(calculated_at)::text FROM historical_bitcoin_calculations WHERE settlement_date = $1) AS btc]], d)
    end
    local days = { "2031-01-20", "2031-01-21", "2031-01-22" }
    local function states() local s = {} for i, d in ipairs(days) do s[i] = state(d) end return s end
    local before = states()
    local logged = count("SELECT count(*) AS n FROM quarry_cache_invalidations")
    out, err, code = ingest("curtailment", csv({ rows[4], rows[2], rows[3], rows[1] })) -- another order: the same rows
    assert.are.equal(0, code, err)
    assert.matches("for 3 date%(s%), 3 of them unchanged; 0 bitcoin row%(s%)", out)
    assert.are.same(before, states())
    assert.are.equal(logged, count("SELECT count(*) AS n FROM quarry_cache_invalidations")) -- nothing went stale
    -- one figure changed on the 21st, and on the 22nd only how a number is written (-4.0 prints apart from -4)
    rows[3] = "2031-01-21,1,T_FARR-1,P,-3.25,-260,-80,-80,true,false"
    rows[4] = "2031-01-22,1,T_FARR-1,P,-4.0,-320,-80,-80,true,false"
    out, err, code = ingest("curtailment", csv(rows))
    assert.are.equal(0, code, err)
    assert.matches("for 3 date%(s%), 1 of them unchanged, replacing 2 stored row%(s%); 6 bitcoin row%(s%)", out)
    local after = states()
    assert.are.same(before[1], after[1])
    for i = 2, 3 do assert.are_not.equal(before[i].rows, after[i].rows, days[i]) end
    assert.are.same({ "-3.25", "-4.0" }, { db:query_one([[SELECT volume FROM curtailment_records
      WHERE settlement_date = '2031-01-21']]).volume, db:query_one([[SELECT volume FROM curtailment_records
      WHERE settlement_date = '2031-01-22']]).volume })
    assert.are.equal("3.25", db:query_one([[SELECT curtailed_energy FROM historical_bitcoin_calculations
      WHERE settlement_date = '2031-01-21' AND miner_model = 'S9']]).curtailed_energy)
    assert.is_true(count("SELECT count(*) AS n FROM quarry_cache_invalidations") > logged)
    -- a bad row in a reload (the rows cast for comparing first) is refused the same way, nothing changed
    local bad = { rows[1], rows[2], rows[3], "2031-01-22,1,T_FARR-1,P,5,-320,-80,-80,true,false" }
    local stored = states()
    out, err, code = ingest("curtailment", csv(bad))
    assert.are.equal(2, code, err)
    assert.are.equal("", out)
    assert.matches(":5: volume '5' must be negative", err)
    assert.are.same(stored, states())
    -- a file with part of a day (one of its two rows) replaces the whole day, and says how many rows went
    out, err, code = ingest("curtailment", csv({ rows[1] }))
    assert.are.equal(0, code, err)
    assert.matches("for 1 date%(s%), replacing 2 stored row%(s%); 3 bitcoin row%(s%)", out)
    assert.are.equal(1, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-20'"))
  end)

  it("takes lead party and capacity from the BM unit reference: fills an empty party, refuses the impossible", function()
    db:exec([[INSERT INTO bmus (farm_id, name, capacity_mw, lead_party_name, fuel_type)
      VALUES ('T_INGSPEC-1', 'Ingest spec', 20, 'Spec Wind Ltd', 'WIND')]])
    finally(function() db:exec("DELETE FROM bmus WHERE farm_id = 'T_INGSPEC-1'") end)
    local path = csv({ "2031-01-04,7,T_INGSPEC-1,,-10,-800,-80,-80,true,false" })
    local _, err, code = ingest("curtailment", path)
    assert.are.equal(0, code, err)
    assert.are.equal("Spec Wind Ltd", db:query_one([[SELECT lead_party_name FROM curtailment_records
      WHERE settlement_date = '2031-01-04' AND farm_id = 'T_INGSPEC-1']]).lead_party_name)
    path = csv({ "2031-01-05,7,T_INGSPEC-1,,-10,-800,-80,-80,true,false",
                 "2031-01-05,8,T_INGSPEC-1,,-10.5,-840,-80,-80,true,false" }) -- 20 MW x 0.5 h = 10 MWh
    local out
    out, err, code = ingest("curtailment", path)
    assert.are.equal(2, code, out)
    assert.matches(":3: volume '%-10%.5' is more than T_INGSPEC%-1 can give up in one period %(20 MW x 0%.5 h", err)
    assert.are.equal(0, count("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = '2031-01-05'"))
  end)

  it("computes the domain check: 99,864.95 MWh on 2025-03-28", function()
    clear("2025-03-28", "2025-03-28")
    db:exec("INSERT INTO bitcoin_difficulty VALUES ('2025-03-28', 113757508810853) ON CONFLICT DO NOTHING")
    -- the day's energy as a unit can give it: 25 periods, two acceptances of 1,997.299 MWh each
    local rows = {}
    for p = 1, 25 do
      for _ = 1, 2 do
        rows[#rows + 1] = ("2025-03-28,%d,T_SGRWO-1,Seagreen Wind Energy Limited,-1997.299,-19972.99,-10,-10,true,"
          .. "false"):format(p)
      end
    end
    assert.are.equal(0, select(3, ingest("curtailment", csv(rows))))
    local got = {}
    for _, r in ipairs(db:query([[SELECT miner_model, round(sum(bitcoin_mined), 2)::text AS btc
        FROM historical_bitcoin_calculations WHERE settlement_date = '2025-03-28' AND farm_id = 'T_SGRWO-1'
        GROUP BY miner_model]])) do
      got[r.miner_model] = r.btc
    end
    assert.are.same({ S19J_PRO = "75.39", S9 = "23.46", M20S = "46.54" }, got)
    clear("2025-03-28", "2025-03-28")
  end)

  it("doubles the bitcoin of the same energy and difficulty the day before the halving", function()
    local path = csv({
      "2024-04-19,30,T_BHLAW-1,SSE Generation Ltd,-50,-4000,-80,-80,true,false",
      "2024-04-20,30,T_BHLAW-1,SSE Generation Ltd,-50,-4000,-80,-80,true,false",
    })
    assert.are.equal(0, select(3, ingest("curtailment", path)))
    local r = db:query_one([[
      SELECT max(bitcoin_mined) FILTER (WHERE settlement_date = '2024-04-19') AS before,
             max(bitcoin_mined) FILTER (WHERE settlement_date = '2024-04-20') AS after,
             max(bitcoin_mined) FILTER (WHERE settlement_date = '2024-04-19')
               = 2 * max(bitcoin_mined) FILTER (WHERE settlement_date = '2024-04-20') AS exactly_double
      FROM historical_bitcoin_calculations WHERE farm_id = 'T_BHLAW-1' AND miner_model = 'S19J_PRO'
        AND settlement_date IN ('2024-04-19', '2024-04-20')]])
    assert.is_true(r.exactly_double, r.before .. " vs " .. r.after)
  end)

  it("refuses a date with no difficulty known, naming it, and changes nothing", function()
    local before = count("SELECT count(*) AS n FROM curtailment_records")
    local path = csv({ "2032-06-01,1,T_FARR-1,Smartestenergy Limited,-1,-80,-80,-80,true,false" })
    local _, err, code = ingest("curtailment", path)
    assert.are.equal(2, code)
    assert.matches("no bitcoin difficulty known for 2032%-06%-01", err)
    assert.are.equal(before, count("SELECT count(*) AS n FROM curtailment_records"))
  end)

  it("takes --dates FROM..TO as the file's whole dates: rows elsewhere refused, calm days loaded as zero", function()
    local function empty() return h.write(h.tmpname(".csv"), h.CURTAILMENT_HEADER .. "\n") end -- no rows
    -- 2032-07 has no difficulty point: a calm day needs none (it has no bitcoin)
    local _, err, code = ingest("curtailment --dates 2032-07-01..2032-07-03", empty())
    assert.are.equal(0, code, err)
    assert.are.equal(3, count([[SELECT count(*)::int AS n FROM curtailment_loaded_days
      WHERE settlement_date BETWEEN '2032-07-01' AND '2032-07-03']]))
    local out
    out, err, code = ingest("curtailment --dates 2032-07-01..2032-07-03", empty())
    assert.are.equal(0, code, err)
    assert.matches("for 3 date%(s%), 3 of them unchanged", out) -- loaded already: nothing to invalidate
    -- a row outside the dates, or a bad --dates, changes nothing
    local before = count("SELECT count(*)::int AS n FROM curtailment_loaded_days")
    _, err, code = ingest("curtailment --dates 2031-03-01..2031-03-02",
      csv({ "2031-03-05,1,T_FARR-1,P,-1,-80,-80,-80,true,false" }))
    assert.are.equal(2, code)
    assert.matches("a row of 2031-03-05, outside the dates replaced", err, 1, true)
    for _, bad in ipairs({ "2031-03-32", "2031-03-05..2031-03-01", "'2031-03-01; DROP TABLE bmus'" }) do
      _, err, code = ingest("curtailment --dates " .. bad, empty())
      assert.are.equal(2, code, bad)
      assert.matches("%-%-dates", err)
    end
    assert.are.equal(before, count("SELECT count(*)::int AS n FROM curtailment_loaded_days"))
    assert.is_not_nil(db:query_one("SELECT to_regclass('bmus') AS t").t)
  end)

  it("--farms-only replaces just the file's farms of a loaded day; the others' rows and bitcoin stay", function()
    local D = "2031-01-14"
    assert.are.equal(0, select(3, ingest("curtailment", csv({
      D .. ",10,T_SGRWO-1,Seagreen Wind Energy Limited,-10,-50,-5,-5,true,false",
      D .. ",11,T_SGRWO-1,Seagreen Wind Energy Limited,-4,-20,-5,-5,true,false",
      D .. ",12,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false" }))))
    local dorew = db:query_one([[SELECT count(*)::int AS n, sum(bitcoin_mined)::text AS btc
      FROM historical_bitcoin_calculations WHERE settlement_date = $1 AND farm_id = 'T_DOREW-1']], D)
    local fix = { D .. ",10,T_SGRWO-1,Seagreen Wind Energy Limited,-12,-60,-5,-5,true,false" }
    local out, err, code = ingest("curtailment --farms-only", csv(fix))
    assert.are.equal(0, code, err)
    assert.matches("for 1 date%(s%), replacing 2 stored row%(s%) of its farms", out)
    assert.are.same({ "T_DOREW-1 -20", "T_SGRWO-1 -12" }, (function()
      local got = {}
      for i, r in ipairs(db:query([[SELECT farm_id, volume::text AS v FROM curtailment_records
          WHERE settlement_date = $1 ORDER BY 1]], D)) do got[i] = r.farm_id .. " " .. r.v end
      return got
    end)())
    assert.are.same(dorew, db:query_one([[SELECT count(*)::int AS n, sum(bitcoin_mined)::text AS btc
      FROM historical_bitcoin_calculations WHERE settlement_date = $1 AND farm_id = 'T_DOREW-1']], D))
    assert.are.equal(0, count([[SELECT count(*)::int AS n FROM historical_bitcoin_calculations
      WHERE settlement_date = $1 AND farm_id = 'T_SGRWO-1' AND settlement_period = 11]], D))
    -- the day's figures are its rows': 32 MWh, from the rollups as from the raw rows
    local r = h.quarry("report daily --date " .. D .. " --format json --no-cache")
    assert.matches('"curtailed_mwh":32', r)
    assert.are.equal(r, (h.quarry("report daily --date " .. D .. " --format json --direct")))
    out, err, code = ingest("curtailment --farms-only", csv(fix)) -- again: nothing to rewrite
    assert.are.equal(0, code, err)
    assert.matches("1 of them unchanged", out)
    -- not onto a day nobody loaded (the day would read as whole), nor a seed's, nor with --dates
    local _
    _, err, code = ingest("curtailment --farms-only",
      csv({ "2031-01-15,10,T_SGRWO-1,Seagreen Wind Energy Limited,-12,-60,-5,-5,true,false" }))
    assert.are.equal(2, code, err)
    assert.matches("2031%-01%-15 is not loaded; load it whole first", err)
    db:exec("UPDATE curtailment_loaded_days SET source = 'seed' WHERE settlement_date = $1", D)
    _, err, code = ingest("curtailment --farms-only", csv(fix))
    assert.are.equal(2, code, err)
    assert.matches("2031%-01%-14 holds made%-up data from quarry db seed", err)
    db:exec("UPDATE curtailment_loaded_days SET source = 'csv' WHERE settlement_date = $1", D)
    _, err, code = ingest("curtailment --farms-only --dates " .. D, csv(fix))
    assert.are.equal(2, code, err)
    assert.matches("give %-%-dates .* or %-%-farms%-only .*, not both", err)
    assert.are.equal(0, count("SELECT count(*)::int AS n FROM curtailment_loaded_days WHERE settlement_date = '2031-01-15'"))
  end)

  it("--farms-only killed with -9 mid-write leaves the day as it was, and a rerun completes", function()
    local D = "2031-01-16"
    assert.are.equal(0, select(3, ingest("curtailment", csv({
      D .. ",10,T_SGRWO-1,Seagreen Wind Energy Limited,-10,-50,-5,-5,true,false",
      D .. ",12,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false" }))))
    local function day()
      local got = {}
      for i, r in ipairs(db:query([[SELECT farm_id, volume::text AS v FROM curtailment_records
          WHERE settlement_date = $1 ORDER BY 1]], D)) do got[i] = r.farm_id .. " " .. r.v end
      return table.concat(got, ", ")
    end
    local before = day()
    local path = csv({ D .. ",10,T_SGRWO-1,Seagreen Wind Energy Limited,-13,-65,-5,-5,true,false" })
    local holder = h.db()
    -- another session holds the farm's bitcoin row: the load rewrites the farm's curtailment rows, then
    -- waits on that row while recomputing the day's bitcoin, and is killed there
    h.kill_while_waiting(db, holder, function(tx)
      tx:query_one([[SELECT 1 AS x FROM historical_bitcoin_calculations WHERE settlement_date = $1
        AND farm_id = 'T_SGRWO-1' LIMIT 1 FOR UPDATE]], D)
    end, ("%s ingest curtailment --farms-only %s"):format(h.shell_quote(h.bin), path), "wait_event_type = 'Lock'")
    holder:close()
    assert.are.equal(before, day())
    local out, err, code = ingest("curtailment --farms-only", path)
    assert.are.equal(0, code, err)
    assert.matches("replacing 1 stored row%(s%) of its farms", out)
    assert.are.equal("T_DOREW-1 -20, T_SGRWO-1 -13", day())
    local r = h.quarry("report daily --date " .. D .. " --format json --no-cache")
    assert.are.equal(r, (h.quarry("report daily --date " .. D .. " --format json --direct")))
  end)

  -- Before: a load behind an analyst's open psql transaction on the same
  -- rows waited in silence for as long as that transaction stayed open.
  it("says who holds the lock a load waits for, while it waits, then loads; DB_LOCK_WAIT gives up instead", function()
    local D = "2031-01-17"
    local row = D .. ",10,T_SGRWO-1,Seagreen Wind Energy Limited,-%d,-50,-5,-5,true,false"
    assert.are.equal(0, select(3, ingest("curtailment", csv({ row:format(10) }))))
    local path, err_file, rc_file = csv({ row:format(11) }), h.tmpname(".err"), h.tmpname(".rc")
    local holder = h.db({ max_size = 1 })
    local holder_pid
    assert(holder:transaction(function(tx)
      holder_pid = tx:pid()
      tx:query("SELECT id FROM curtailment_records WHERE settlement_date = $1 FOR UPDATE", D)
      os.execute(("(%s ingest curtailment %s 2>%s; echo $? >%s) >/dev/null &"):format(h.shell_quote(h.bin), path,
        err_file, rc_file))
      local said = h.eventually(function() return (h.read(err_file) or ""):match("waited %d+ s for a lock held by")
        ~= nil end, true, 15)
      assert.is_true(said, h.read(err_file))
      assert.is_nil(h.read(rc_file), "the load went on past the lock")
      -- with a limit (cron's choice), the same load gives up and changes nothing
      local _, lerr, lcode = h.quarry("ingest curtailment " .. path, { DB_LOCK_WAIT = "1000" })
      assert.are.equal(1, lcode, lerr)
      assert.matches("gave up after 1000 ms waiting for a lock another session holds %(DB_LOCK_WAIT%): nothing "
        .. "was changed", lerr)
    end))
    holder:close()
    local rc = h.eventually(function() return h.read(rc_file) ~= nil end, true, 15) and h.read(rc_file)
    assert.are.equal("0", rc and rc:match("%d+"), h.read(err_file))
    local err = h.read(err_file)
    assert.matches("lock held by pid " .. holder_pid .. " %(", err)
    assert.matches("Ctrl%-C stops it here, changing nothing", err)
    assert.are.equal("-11", db:query_one("SELECT volume::text AS v FROM curtailment_records WHERE settlement_date = $1",
      D).v)
    os.remove(err_file)
    os.remove(rc_file)
    os.remove(path)
  end)

  it("--dry-run shows per date what a load would change, checks the file the same way, and changes nothing", function()
    for _, t in ipairs({ "curtailment_records", "historical_bitcoin_calculations", "curtailment_loaded_days" }) do
      db:exec(("DELETE FROM %s WHERE settlement_date BETWEEN '2031-01-20' AND '2031-01-23'"):format(t))
    end
    local _, err, code = ingest("curtailment", csv({ "2031-01-22,1,T_FARR-1,P,-2,-160,-80,-80,true,false",
      "2031-01-22,2,T_FARR-1,P,-3,-240,-80,-80,true,false" }))
    assert.are.equal(0, code, err)
    local function state()
      return db:query_one([[SELECT (SELECT count(*) FROM curtailment_records WHERE settlement_date
          BETWEEN '2031-01-21' AND '2031-01-23')::int AS rows,
        (SELECT count(*) FROM historical_bitcoin_calculations WHERE settlement_date
          BETWEEN '2031-01-21' AND '2031-01-23')::int AS btc,
        (SELECT count(*) FROM curtailment_loaded_days WHERE settlement_date
          BETWEEN '2031-01-21' AND '2031-01-23')::int AS loaded,
        (SELECT coalesce(max(seq), 0) FROM quarry_cache_invalidations)::bigint AS seq]])
    end
    local before = state()
    local out
    out, err, code = ingest("curtailment --dry-run --dates 2031-01-21..2031-01-23",
      csv({ "2031-01-22,1,T_FARR-1,P,-7,-560,-80,-80,true,false" }))
    assert.are.equal(0, code, err)
    assert.are.equal("", err) -- no "ingested" log line: nothing was
    assert.matches("dry run: 3 date(s), 3 with other totals or not loaded yet; nothing was changed", out, 1, true)
    assert.matches("2031%-01%-21 +no data +0 +0 +0 +new", out)
    assert.matches("2031%-01%-22 +2 +1 +5 +7 +400 +560 +replaced", out)
    assert.matches("2031%-01%-23 +no data +0 +0 +0 +new", out)
    assert.are.same(before, state())
    -- a bad row is the error a load would give, and still nothing changes
    _, err, code = ingest("curtailment --dry-run", csv({ "2031-01-22,99,T_FARR-1,P,-7,-560,-80,-80,true,false" }))
    assert.are.equal(2, code)
    assert.matches(":2: settlement_period '99' is not a settlement period", err, 1, true)
    assert.are.same(before, state())
  end)

  local bad_rows = {
    { "2031-02-30,1,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_date '2031-02-30' is not a date" },
    { "2031-01-05,51,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_period '51' is not a settlement period" },
    { "2031-01-05,0,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_period '0'" },
    { "2031-01-05,1,T_FARR-1,P,5,-80,-80,-80,true,false", ":2: volume '5' must be negative" },
    { "2031-01-05,1,T_FARR-1,P,-1,lots,-80,-80,true,false", ":2: payment 'lots' is not a number" },
    { "2031-01-05,1,T_FARR-1,P,-1,-80,NaN,-80,true,false", ":2: original_price 'NaN' is not a number" },
    { "2031-01-05,1,T_FARR-1,P,-1,-80,-80,-80,maybe,false", ":2: so_flag 'maybe' is not a boolean" },
    { "2031-01-05,1,x'; DROP TABLE curtailment_records; --,P,-1,-80,-80,-80,true,false", ":2: farm_id" },
    -- implausible magnitudes, bounded in lua/quarry/defs/bounds.lua
    { "2031-01-05,1,T_FARR-1,P,-1e400,-80,-80,-80,true,false", ":2: volume '-1e400' is implausible" },
    { "2031-01-05,1,T_FARR-1,P,-2500,-80,-80,-80,true,false", ":2: volume '-2500' is implausible" },
    { "2031-01-05,1,T_FARR-1,P,-1,-1e12,-80,-80,true,false", ":2: payment '-1e12' is implausible" },
    { "2031-01-05,1,T_FARR-1,P,-1,-80,-1e9,-80,true,false", ":2: original_price '-1e9' is implausible" },
    { "2031-01-05,1,T_FARR-1,P,-1,-80,-80,1e6,true,false", ":2: final_price '1e6' is implausible" },
    { "2031-01-05,1,T_FARR-1," .. ("L"):rep(2 * 1024 * 1024) .. ",-1,-80,-80,-80,true,false",
      ":2: lead_party_name '" .. ("L"):rep(57) .. "...' is longer than 200 characters" },
    -- a name is one line of text: no line break to forge a row in a report, no escape to drive a terminal
    { '2031-01-05,1,T_FARR-1,"Good Wind Ltd\nquarry: loaded 0 rows",-1,-80,-80,-80,true,false',
      ":2: lead_party_name 'Good Wind Ltd\\x0aquarry: loaded 0 rows' has a control character" },
    { "2031-01-05,1,T_FARR-1,Evil\27[2J\27]0;owned\7,-1,-80,-80,-80,true,false",
      ":2: lead_party_name 'Evil\\x1b[2J\\x1b]0;owned\\x07' has a control character" },
    { "0000-01-05,1,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_date '0000-01-05' is not a date" },
    { "1999-01-05,1,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_date '1999-01-05' is outside the dates" },
    -- settlement periods of the day in Europe/London
    { "2031-01-05,49,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_period '49' is not a settlement "
      .. "period of 2031-01-05 (1..48 in Europe/London)" },
    { "2024-03-31,47,T_FARR-1,P,-1,-80,-80,-80,true,false", ":2: settlement_period '47' is not a settlement "
      .. "period of 2024-03-31 (1..46 in Europe/London)" },
  }
  for _, case in ipairs(bad_rows) do
    it("rejects a bad row with exit 2, naming the line and field: " .. case[2], function()
      local before = count("SELECT count(*) AS n FROM curtailment_records")
      local path = csv({ "2031-01-05,1,T_FARR-1,P,-1,-80,-80,-80,true,false", case[1] })
      local _, err, code = ingest("curtailment", path)
      assert.are.equal(2, code, err)
      local want = case[2]:gsub(":2:", ":3:") -- a good row comes first
      assert.matches(want:gsub("%p", "%%%0"), err)
      assert.is_nil(err:find("[\27\7]"), "the message shows no raw escape")
      assert.are.equal(before, count("SELECT count(*) AS n FROM curtailment_records"))
      assert.is_not_nil(db:query_one("SELECT to_regclass('curtailment_records') AS t").t)
    end)
  end

  it("names the line of a bad row deep in a file (rows numbered only once a load fails)", function()
    local rows = {}
    for i = 1, 6000 do
      rows[i] = ("2031-01-%02d,%d,T_FARR-%d,P,-1,-80,-80,-80,true,false"):format(5 + i % 3, 1 + i % 48, i % 97)
    end
    rows[4321] = "2031-01-05,1,T_FARR-1,P,-1,-80,-80,-80,true,yes"
    local _, err, code = ingest("curtailment", csv(rows))
    assert.are.equal(2, code, err)
    assert.matches(":4322: cadl_flag 'yes' is not a boolean", err)
  end)

  it("takes 46 periods on the spring clock change and 50 on the autumn one, and the periods report shows them", function()
    clear("2024-03-31", "2024-03-31")
    clear("2024-10-27", "2024-10-27")
    db:exec("INSERT INTO bitcoin_difficulty VALUES ('2024-03-30', 83e12), ('2024-10-26', 95e12) ON CONFLICT DO NOTHING")
    local rows = {}
    for p = 1, 46 do rows[#rows + 1] = ("2024-03-31,%d,T_FARR-1,P,-1,-80,-80,-80,true,false"):format(p) end
    for p = 1, 50 do rows[#rows + 1] = ("2024-10-27,%d,T_FARR-1,P,-1,-80,-80,-80,true,false"):format(p) end
    local _, err, code = ingest("curtailment", csv(rows))
    assert.are.equal(0, code, err)
    for date, n in pairs({ ["2024-03-31"] = 46, ["2024-10-27"] = 50 }) do
      local out
      out, err, code = h.quarry("report periods --date " .. date .. " --format json --no-cache")
      assert.are.equal(0, code, err)
      local r = require("cjson").decode(out)
      assert.are.equal(n, #r.rows, date)
    end
    clear("2024-03-31", "2024-03-31")
    clear("2024-10-27", "2024-10-27")
  end)

  it("refuses a file with a line holding only \\. (which would end the load there), naming the line", function()
    local before = count("SELECT count(*) AS n FROM curtailment_records")
    for _, mark in ipairs({ "\\.", "\\.\r" }) do
      local path = h.write(h.tmpname(".csv"), h.CURTAILMENT_HEADER .. "\n"
        .. "2031-01-06,1,T_FARR-1,P,-1,-80,-80,-80,true,false\n" .. mark .. "\n"
        .. "2031-01-06,2,T_FARR-1,P,-1,-80,-80,-80,true,false\n")
      local _, err, code = ingest("curtailment", path)
      assert.are.equal(2, code, err)
      assert.matches(":3: a line holding only \\%. would end the load", err)
    end
    -- at the very end, with no newline after it, and past the first chunk
    local big = {}
    for i = 1, 9000 do big[i] = ("2031-01-06,%d,T_FARR-1,P,-1,-80,-80,-80,true,false"):format(i % 48 + 1) end
    local path = h.write(h.tmpname(".csv"), h.CURTAILMENT_HEADER .. "\n" .. table.concat(big, "\n") .. "\n\\.")
    local _, err, code = ingest("curtailment", path)
    assert.are.equal(2, code, err)
    assert.matches(":9002: a line holding only", err)
    assert.are.equal(before, count("SELECT count(*) AS n FROM curtailment_records"))
    -- inside a quoted value it is data
    path = csv({ '2031-01-06,1,T_FARR-1,"\\.",-1,-80,-80,-80,true,false' })
    _, err, code = ingest("curtailment", path)
    assert.are.equal(0, code, err)
    assert.are.equal("\\.", db:query_one("SELECT lead_party_name AS p FROM curtailment_records "
      .. "WHERE settlement_date = '2031-01-06'").p)
  end)

  it("rejects a bad header and a file with a wrong number of fields", function()
    local p = h.write(h.tmpname(".csv"), "settlement_date,period\n2031-01-01,1\n")
    local _, err, code = ingest("curtailment", p)
    assert.are.equal(2, code)
    assert.matches(":1: unknown column 'period'", err)
    p = csv({ "2031-01-05,1,T_FARR-1" })
    _, err, code = ingest("curtailment", p)
    assert.are.equal(2, code)
    assert.matches(":2: missing data for column", err)
    _, err, code = ingest("curtailment", "/no/such/file.csv")
    assert.are.equal(2, code)
    assert.are.equal("quarry: cannot open /no/such/file.csv: No such file or directory\n", err) -- the path once
    local dir = h.tmpname(".dir")
    os.execute("mkdir -p " .. h.shell_quote(dir))
    _, err, code = h.quarry("ingest curtailment " .. h.shell_quote(dir))
    os.execute("rm -rf " .. h.shell_quote(dir))
    assert.are.equal(2, code)
    assert.matches("cannot read .*: Is a directory", err)
  end)
end)

describe("ingest --template", function()
  it("prints files that ingest takes as they are (into a scratch database)", function()
    local url, sdb = h.scratch_database("ingest_template")
    local env = { DATABASE_URL = url, QUARRY_CACHE = "off" }
    assert.are.equal(0, select(3, h.quarry("db migrate", env)))
    for _, kind in ipairs({ "difficulty", "curtailment" }) do
      local path = h.tmpname(".csv")
      local _, err, code = h.quarry(("ingest %s --template > %s"):format(kind, path), env)
      assert.are.equal(0, code, err)
      _, err, code = h.quarry(("ingest %s %s"):format(kind, path), env)
      os.remove(path)
      assert.are.equal(0, code, err)
    end
    assert.are.equal(3, sdb:query_one("SELECT count(*) AS n FROM curtailment_records").n)
    local _, err, code = h.quarry("ingest curtailment", env)
    assert.are.equal(2, code)
    assert.matches("needs a FILE", err)
    sdb:close()
    h.drop_database("ingest_template")
  end)
end)

describe("ingest difficulty", function()
  it("recalculates the bitcoin of the dates whose difficulty changes, and only those", function()
    local path = csv({ "2031-03-10,1,T_FARR-1,P,-10,-800,-80,-80,true,false",
                       "2031-03-20,1,T_FARR-1,P,-10,-800,-80,-80,true,false" })
    db:exec("INSERT INTO bitcoin_difficulty VALUES ('2031-03-01', 100e12) ON CONFLICT DO NOTHING")
    assert.are.equal(0, select(3, ingest("curtailment", path)))
    local function btc(d)
      return db:query_one([[SELECT bitcoin_mined::text AS b FROM historical_bitcoin_calculations
        WHERE settlement_date = $1 AND miner_model = 'S9']], d).b
    end
    local before10, before20 = btc("2031-03-10"), btc("2031-03-20")
    local p = h.write(h.tmpname(".csv"), "date,difficulty\n2031-03-15,200000000000000\n")
    local out, err, code = ingest("difficulty", p)
    assert.are.equal(0, code, err)
    assert.matches("bitcoin recalculated for 1 date", out)
    assert.are.equal(before10, btc("2031-03-10"))
    assert.are.equal(db:query_one("SELECT ($1::numeric / 2)::text AS half", before20).half:sub(1, 12),
      btc("2031-03-20"):sub(1, 12))
  end)

  it("rejects implausible difficulties and dates out of range", function()
    for _, case in ipairs({ { "2031-03-01,1e-400", "is implausible" }, { "2031-03-01,1e30", "is implausible" },
                            { "1990-03-01,100e12", "is outside the dates" } }) do
      local path = h.write(h.tmpname(".csv"), "date,difficulty\n" .. case[1] .. "\n")
      local _, err, code = ingest("difficulty", path)
      assert.are.equal(2, code, err)
      assert.matches(":2: [a-z]+ '[^']*' " .. case[2], err)
    end
  end)

  it("rejects bad points", function()
    for _, bad in ipairs({ "2031-13-01,5", "2031-01-01,-5", "2031-01-01,abc", "2031-01-01,5\n2031-01-01,6" }) do
      local p = h.write(h.tmpname(".csv"), "date,difficulty\n" .. bad .. "\n")
      local _, err, code = ingest("difficulty", p)
      assert.are.equal(2, code, bad)
      assert.matches(":%d: ", err)
    end
  end)
end)
