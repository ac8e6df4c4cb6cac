-- lua/quarry/partition.lua through `quarry partition`: on a seeded database
-- of its own (the spec renames the big tables), apply keeps every row and
-- every report figure, survives a kill mid-copy, catches up rows written
-- meanwhile, prunes, maintains and rolls back.
local h = require "spec.helper"
local partition = require "quarry.partition"

local DBNAME = "quarry_partition_spec"
local URL, db
local TABLES = { "curtailment_records", "historical_bitcoin_calculations" }

local function q(args) return h.quarry(args, { DATABASE_URL = URL }) end

local function relkind(name)
  local r = db:query_one("SELECT relkind::text AS k FROM pg_class WHERE oid = to_regclass($1)", name)
  return r and r.k
end

-- Every row of both tables (count, sums, checksum over every column in
-- declared order) and the reports' figures, from the rollups and the raw rows.
local function fingerprint()
  local fp = {}
  for _, t in ipairs(TABLES) do
    local cols = {}
    for _, r in ipairs(db:query([[SELECT attname::text AS c FROM pg_attribute WHERE attrelid = $1::regclass
        AND attnum > 0 AND NOT attisdropped ORDER BY attnum]], t)) do
      cols[#cols + 1] = '"' .. r.c .. '"'
    end
    local measure = t == TABLES[1] and "volume" or "bitcoin_mined"
    fp[t] = db:query_one(([[SELECT count(*) AS n, sum(%s)::text AS total,
      sum(hashtextextended(ROW(%s)::text, 0)::numeric)::text AS checksum FROM %s]])
      :format(measure, table.concat(cols, ", "), t))
  end
  for _, args in ipairs({ "monthly --month 2024-01", "monthly --month 2023-12", "yearly --year 2024",
                          "daily --date 2024-01-10", "farms --month 2024-01", "miners --year 2023" }) do
    local out, err, code = q("report " .. args .. " --format json --no-cache")
    assert(code == 0, err)
    fp[args] = out
    -- and over the raw rows, which are what partitioning moves
    out, err, code = q("report " .. args .. " --format json --direct")
    assert(code == 0, err)
    fp[args .. " --direct"] = out
  end
  return fp
end

-- A report's JSON, from the rollups (uncached) or the raw rows (direct).
local function report_of(args, direct)
  local out, err, code = q("report " .. args .. " --format json " .. (direct and "--direct" or "--no-cache"))
  assert(code == 0, err)
  return out
end

-- Relations an EXPLAIN (FORMAT JSON) plan scans.
local function scanned(plan, out)
  out = out or {}
  if plan["Relation Name"] then out[plan["Relation Name"]] = true end
  for _, sub in ipairs(plan.Plans or {}) do scanned(sub, out) end
  return out
end

describe("partition", function()
  setup(function()
    URL, db = h.seeded_database(DBNAME, "2023-12-01", "2024-01-31")
  end)

  teardown(function()
    db:close()
    h.drop_database(DBNAME)
  end)

  it("refuses a plan whose keys lack the partition key", function()
    local plan = { key = "settlement_date", interval = "year", ahead = 1, batch_key = "id",
                   primary_key = { "id" } }
    local ok, err = pcall(partition.check_plan, "curtailment_records", plan)
    assert.is_false(ok)
    assert.matches("primary key %(id%) lacks the partition key settlement_date", tostring(err))
    plan.primary_key = { "id", "settlement_date" }
    plan.unique = { { "settlement_period", "farm_id" } }
    ok, err = pcall(partition.check_plan, "curtailment_records", plan)
    assert.is_false(ok)
    assert.matches("unique key %(settlement_period, farm_id%) lacks the partition key", tostring(err))
    plan.interval = "week"
    assert.is_false(pcall(partition.check_plan, "curtailment_records", plan))
    local _, perr, code = q("partition plan no_such_table")
    assert.are.equal(2, code)
    assert.matches("no partition plan for 'no_such_table'", perr)
  end)

  it("plan prints the DDL and the rows per partition, and changes nothing", function()
    local out, err, code = q("partition plan curtailment_records")
    assert.are.equal(0, code, err)
    assert.matches('PARTITION BY RANGE %("settlement_date"%)', out)
    assert.matches('curtailment_records_y2023%s+%[2023%-01%-01, 2024%-01%-01%)%s+%d+ rows', out)
    assert.matches('PRIMARY KEY %("id", "settlement_date"%)', out)
    assert.are.equal("r", relkind("curtailment_records"))
    assert.is_nil(relkind("curtailment_records_partitioned"))
  end)

  it("apply survives a kill mid-copy, catches up writes made meanwhile, and keeps every figure", function()
    -- Small batches, so the copy is still running when it is killed.
    local pidfile = h.tmpname(".pid")
    os.execute(("DATABASE_URL=%s %s partition apply curtailment_records --batch-size 100 >/dev/null 2>&1 & "
      .. "echo $! > %s"):format(h.shell_quote(URL), h.shell_quote(h.bin), pidfile))
    local pid = assert(tonumber(h.read(pidfile)))
    os.remove(pidfile)
    for _ = 1, 500 do
      local st = db:query_one("SELECT rows_copied FROM quarry_partition_state WHERE table_name = $1",
        "curtailment_records")
      if st and st.rows_copied > 0 then break end
      h.sleep(0.01)
    end
    -- Readers keep working while the copy runs.
    local during = db:query_one("SELECT count(*) AS n FROM curtailment_records").n
    os.execute("kill -9 " .. pid)
    h.sleep(0.2)
    local total = db:query_one("SELECT count(*) AS n FROM curtailment_records").n
    local st = db:query_one("SELECT phase, rows_copied FROM quarry_partition_state WHERE table_name = $1",
      "curtailment_records")
    assert.are.equal("copying", st.phase)
    assert.is_true(st.rows_copied > 0 and st.rows_copied < total, "killed mid-copy")
    assert.are.equal(total, during)
    assert.are.equal("r", relkind("curtailment_records")) -- the original is still the table readers use

    -- Writes while the apply is stopped: to rows already copied, and new rows.
    local low = db:query_one("SELECT min(id) AS id FROM curtailment_records").id
    db:exec("UPDATE curtailment_records SET volume = -999.5 WHERE id = $1", low)
    db:exec("DELETE FROM curtailment_records WHERE id = $1", low + 1)
    -- (writes made outside quarry: noted, and mended here, mid-apply, bitcoin and rollups)
    local rout, rerr, rcode = q("rollup refresh")
    assert.are.equal(0, rcode, rerr)
    assert.matches("mended 1 date(s)", rout, 1, true)
    local csv = h.curtailment_csv({ "2024-01-20,7,T_SGRWO-1,Seagreen Wind Energy Limited,-12.5,-60,-5,-5,true,false" })
    local _, err, code = q("ingest curtailment --dates 2024-01-20 " .. csv) -- the day whole: its other farms go
    os.remove(csv)
    assert.are.equal(0, code, err)
    local expected = fingerprint()

    local out
    out, err, code = q("partition apply --batch-size 20000")
    assert.are.equal(0, code, err)
    assert.matches("curtailment_records: partitioned; %d+ row%(s%) copied .-, [1-9]%d* caught up", out)
    assert.matches("historical_bitcoin_calculations: partitioned", out)
    assert.matches("continuing the apply", err)
    for _, t in ipairs(TABLES) do
      assert.are.equal("p", relkind(t))
      assert.are.equal("r", relkind(t .. "_unpartitioned"))
    end
    assert.are.equal("-999.5", db:query_one("SELECT volume::text AS v FROM curtailment_records WHERE id = $1",
      low).v)
    assert.is_nil(db:query_one("SELECT 1 AS x FROM curtailment_records WHERE id = $1", low + 1))
    assert.are.same(expected, fingerprint())
    local uniq = db:query_one([[SELECT count(*) AS n FROM pg_constraint WHERE conrelid =
      'historical_bitcoin_calculations'::regclass AND contype = 'u']]).n
    assert.are.equal(1, uniq)

    out, err, code = q("partition verify")
    assert.are.equal(0, code, err)
    assert.matches("curtailment_records: %d+ partition%(s%), identical to curtailment_records_unpartitioned", out)
  end)

  it("refuses a second apply", function()
    local _, err, code = q("partition apply curtailment_records")
    assert.are.equal(2, code)
    assert.matches("curtailment_records is already partitioned", err)
  end)

  it("prunes: one month's summary scans only the partition holding that month", function()
    local summaries = require "quarry.defs.summaries"
    for _, s in ipairs({ summaries.monthly, summaries.yearly }) do
      local plan = db:query_one("EXPLAIN (FORMAT JSON) " .. s.sql, "2024-01-01")["QUERY PLAN"][1].Plan
      local rels = scanned(plan)
      local names = {}
      for r in pairs(rels) do names[#names + 1] = r end
      table.sort(names)
      assert.are.same({ "curtailment_records_y2024", "historical_bitcoin_calculations_y2024" }, names)
    end
  end)

  it("notes a write made outside quarry that names a partition, and mends it before a report", function()
    local day = db:query_one("SELECT min(settlement_date)::text AS d FROM curtailment_records_y2024").d
    local before = db:query_one([[SELECT sum(bitcoin_mined)::text AS b FROM historical_bitcoin_calculations
      WHERE settlement_date = $1]], day).b
    local n = db:exec("UPDATE curtailment_records_y2024 SET volume = volume * 2 WHERE settlement_date = $1", day)
    assert.is_true(n > 0)
    assert.are.same({ d = day, t = "{curtailment_records}" }, db:query_one([[SELECT settlement_date::text AS d,
      tables::text AS t FROM quarry_outside_writes]]))
    assert.are.equal(report_of("daily --date " .. day, true), report_of("daily --date " .. day))
    assert.is_nil(db:query_one("SELECT 1 AS x FROM quarry_outside_writes"))
    local after = db:query_one([[SELECT sum(bitcoin_mined)::text AS b FROM historical_bitcoin_calculations
      WHERE settlement_date = $1]], day).b
    assert.near(2 * tonumber(before), tonumber(after), 1e-9)
    db:exec("UPDATE curtailment_records SET volume = volume / 2 WHERE settlement_date = $1", day)
    assert.are.equal(0, select(3, q("rollup refresh")))
  end)

  it("keeps the kept plain table in step, and verify catches a difference", function()
    -- quarry's own writes work on the partitioned tables, rollups included.
    local csv = h.curtailment_csv({ "2023-12-28,9,T_DOREW-1,Dorenell Windfarm Limited,-40.5,-3240,-80,-80,true,false" })
    local _, err, code = q("ingest curtailment --dates 2023-12-28 " .. csv)
    os.remove(csv)
    assert.are.equal(0, code, err)
    assert.are.equal(1, db:query_one([[SELECT count(*) AS n FROM curtailment_records_y2023
      WHERE settlement_date = '2023-12-28']]).n)
    assert.are.equal(1, db:query_one([[SELECT count(*) AS n FROM curtailment_records_unpartitioned
      WHERE settlement_date = '2023-12-28']]).n)
    assert.are.equal(3, db:query_one([[SELECT count(*) AS n FROM historical_bitcoin_calculations_unpartitioned
      WHERE settlement_date = '2023-12-28']]).n)
    _, err, code = q("rollup verify")
    assert.are.equal(0, code, err)
    _, err, code = q("partition verify")
    assert.are.equal(0, code, err)
    -- A write to the plain table alone (bypassing the mirror) is a difference.
    db:exec("UPDATE curtailment_records_unpartitioned SET payment = payment + 1 WHERE id = "
      .. "(SELECT max(id) FROM curtailment_records_unpartitioned WHERE settlement_date < '2024-01-01')")
    _, err, code = q("partition verify curtailment_records")
    assert.are.equal(1, code)
    assert.matches("curtailment_records_y2023 from 2023%-01%-01: %d+ vs %d+ rows %(checksums differ%)", err)
    db:exec("UPDATE curtailment_records_unpartitioned SET payment = payment - 1 WHERE id = "
      .. "(SELECT max(id) FROM curtailment_records_unpartitioned WHERE settlement_date < '2024-01-01')")
  end)

  it("maintain creates partitions ahead and empties the default partition; again, it does nothing", function()
    -- Rows no partition covers land in the default partition.
    -- (as a write the triggers do not see: these dates have no difficulty, so no bitcoin, to mend)
    h.unseen_write(db, [[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, volume,
      payment, original_price, final_price) VALUES ('2031-06-01', 3, 'T_X', -1, -1, -1, -1),
      ('2019-06-01', 4, 'T_X', -2, -2, -1, -1)]])
    assert.are.equal(2, db:query_one("SELECT count(*) AS n FROM curtailment_records_default").n)
    for _, d in ipairs({ "2031-06-01", "2019-06-01" }) do -- written outside quarry: refreshed by hand
      local _, rerr, rcode = q("rollup refresh --date " .. d)
      assert.are.equal(0, rcode, rerr)
    end
    local _, out, err, code
    out, err, code = q("partition maintain curtailment_records")
    assert.are.equal(0, code, err)
    assert.matches("created curtailment_records_y2031 and moved 1 row%(s%)", out)
    assert.matches("created curtailment_records_y2019 and moved 1 row%(s%)", out)
    assert.matches("created curtailment_records_y2032", out) -- ahead = 1 past the newest row
    assert.are.equal(0, db:query_one("SELECT count(*) AS n FROM curtailment_records_default").n)
    assert.are.equal(1, db:query_one("SELECT count(*) AS n FROM curtailment_records_y2031").n)
    assert.is_nil(db:query_one([[SELECT 1 AS x FROM quarry_outside_writes
      WHERE settlement_date IN ('2031-06-01', '2019-06-01')]])) -- moving rows is quarry's own write
    out, err, code = q("partition maintain")
    assert.are.equal(0, code, err)
    assert.matches("curtailment_records: nothing to do", out)
    assert.matches("historical_bitcoin_calculations: nothing to do", out)
    _, err, code = q("partition verify curtailment_records")
    assert.are.equal(0, code, err)
  end)

  it("rollback brings back plain tables holding every row, including those written after the swap", function()
    local before = fingerprint()
    -- A long reader holds the table: the swap back waits for it under
    -- lock_timeout, retrying, instead of queueing every query behind it.
    local reader = db:acquire()
    reader:begin()
    reader:query_one("SELECT count(*) AS n FROM curtailment_records")
    local outfile, errfile, rcfile = h.tmpname(".out"), h.tmpname(".err"), h.tmpname(".rc")
    os.execute(("(DATABASE_URL=%s %s partition rollback --lock-timeout 200 >%s 2>%s; echo $? > %s) &")
      :format(h.shell_quote(URL), h.shell_quote(h.bin), outfile, errfile, rcfile))
    h.sleep(1.5)
    assert.are.equal("p", relkind("curtailment_records")) -- still waiting
    reader:rollback()
    reader:release()
    for _ = 1, 300 do
      if (h.read(rcfile) or ""):match("%d") then break end
      h.sleep(0.1)
    end
    assert.are.equal("0", h.read(rcfile):match("%d+"), h.read(errfile))
    assert.matches("lock not granted in time, retrying", h.read(errfile))
    assert.matches("curtailment_records: a plain table again", h.read(outfile))
    os.remove(outfile)
    os.remove(errfile)
    os.remove(rcfile)
    for _, t in ipairs(TABLES) do
      assert.are.equal("r", relkind(t))
      assert.is_nil(relkind(t .. "_unpartitioned"))
    end
    assert.are.same(before, fingerprint())
    -- The id sequence survived (owned by the plain table again).
    db:exec([[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, volume, payment,
      original_price, final_price) VALUES ('2024-01-02', 3, 'T_X', -1, -1, -1, -1)]])
    assert.are.equal(0, select(3, q("rollup refresh"))) -- written outside quarry: mended
    local _, err, code = q("partition rollback curtailment_records")
    assert.are.equal(2, code)
    assert.matches("not partitioned; nothing to roll back", err)
  end)

  it("rollback abandons an unfinished apply, leaving the table as it was", function()
    local before = fingerprint()
    local ok = pcall(partition.apply, db, "curtailment_records", partition.plans("curtailment_records")[1].plan,
      { batch_size = 1000, after_batch = function() error("stopped") end })
    assert.is_false(ok)
    assert.are.equal("p", relkind("curtailment_records_partitioned"))
    local out, err, code = q("partition rollback curtailment_records")
    assert.are.equal(0, code, err)
    assert.matches("unfinished apply abandoned", out)
    assert.is_nil(relkind("curtailment_records_partitioned"))
    -- No trigger is left behind: writes are not logged any more.
    db:exec("UPDATE curtailment_records SET payment = payment WHERE id = (SELECT min(id) FROM curtailment_records)")
    assert.are.equal(0, db:query_one("SELECT count(*) AS n FROM quarry_partition_changes").n)
    assert.are.same(before, fingerprint())
  end)

  it("apply runs while ingests write to the table, and loses none of their rows", function()
    local files, rcs = {}, {}
    local days = { "2024-01-21", "2024-01-22", "2023-12-23" }
    for i, day in ipairs(days) do
      local lines = {}
      for j = 1, 400 do
        lines[j] = ("%s,%d,T_SGRWO-%d,Seagreen Wind Energy Limited,-%d.5,-%d,-5,-5,true,false")
          :format(day, j % 48 + 1, j % 6 + 1, j % 50 + 1, j % 300 + 1)
      end
      files[i] = h.curtailment_csv(lines)
      rcs[i] = h.tmpname(".rc")
    end
    local applyrc, applyerr, applyout = h.tmpname(".rc"), h.tmpname(".err"), h.tmpname(".out")
    local env = "DATABASE_URL=" .. h.shell_quote(URL) .. " "
    -- the ingests one after another, alongside the apply (small batches, so they overlap)
    local ingests = {}
    for i, f in ipairs(files) do
      ingests[i] = ("%s%s ingest curtailment --dates %s %s >/dev/null 2>&1; echo $? > %s; sleep 0.2") -- each day whole
        :format(env, h.shell_quote(h.bin), days[i], f, rcs[i])
    end
    os.execute(("(%s%s partition apply curtailment_records --batch-size 200 >%s 2>%s; echo $? > %s) & "
      .. "(sleep 0.3; %s) & wait"):format(env, h.shell_quote(h.bin), applyout, applyerr, applyrc,
      table.concat(ingests, "; ")))
    assert.are.equal("0", h.read(applyrc):match("%d+"), h.read(applyerr))
    -- (how the writes interleave varies from run to run -- logged and caught up during the copy, waited
    -- for by the swap, or mirrored after it -- and no interleaving may lose a row)
    assert.matches("curtailment_records: partitioned", h.read(applyout))
    for i, f in ipairs(files) do
      assert.are.equal("0", h.read(rcs[i]):match("%d+"), "ingest " .. i)
      os.remove(f)
      os.remove(rcs[i])
    end
    os.remove(applyrc)
    os.remove(applyerr)
    os.remove(applyout)
    assert.are.equal("p", relkind("curtailment_records"))
    for _, day in ipairs({ "2024-01-21", "2024-01-22", "2023-12-23" }) do
      assert.are.equal(400, db:query_one("SELECT count(*) AS n FROM curtailment_records WHERE settlement_date = $1",
        day).n, day)
    end
    local _, err, code = q("partition verify curtailment_records")
    assert.are.equal(0, code, err)
    _, err, code = q("rollup verify --from 2023-12-23 --to 2024-01-22")
    assert.are.equal(0, code, err)
    _, err, code = q("partition rollback curtailment_records") -- plain again for the next test
    assert.are.equal(0, code, err)
  end)

  it("finish drops the kept plain table; retention then detaches old partitions", function()
    -- On a terminal, apply shows its progress: rows, rows/s, ETA.
    local tty = h.tmpname(".tty")
    local ok = os.execute(("script -qec %s %s >/dev/null"):format(h.shell_quote(("DATABASE_URL=%s %s partition "
      .. "apply curtailment_records --batch-size 5000"):format(h.shell_quote(URL), h.shell_quote(h.bin))), tty))
    local shown = h.read(tty) or ""
    os.remove(tty)
    assert.is_true(ok, shown)
    assert.matches("copying curtailment_records: +100%.0%% +%d+ rows +%d+ rows/s +ETA +0s", shown)
    local _, err, code
    local plan = {}
    for k, v in pairs(partition.plans("curtailment_records")[1].plan) do plan[k] = v end
    plan.retain = 3 -- years before this one
    local actions = partition.maintain(db, "curtailment_records", plan)
    assert.matches("retention skipped: the plain table curtailment_records_unpartitioned", actions[#actions])
    local out
    out, err, code = q("partition finish curtailment_records")
    assert.are.equal(0, code, err)
    assert.matches("rollback is no longer possible", out)
    assert.is_nil(relkind("curtailment_records_unpartitioned"))
    -- Writes work without the mirror.
    db:exec([[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, volume, payment,
      original_price, final_price) VALUES ('2024-01-03', 3, 'T_X', -1, -1, -1, -1)]])
    local year = tonumber(db:query_one("SELECT extract(year FROM current_date)::int AS y").y)
    h.unseen_write(db, [[INSERT INTO curtailment_loaded_days (settlement_date) VALUES ('2019-06-01'), ('2019-06-02')
      ON CONFLICT DO NOTHING]]) -- a day with rows and a calm one, both loaded
    actions = partition.maintain(db, "curtailment_records", plan)
    local detached = table.concat(actions, "\n")
    assert.matches("detached curtailment_records_y2019", detached)
    -- its rows left the table, and its dates' rollups with them
    assert.is_nil(db:query_one("SELECT 1 AS x FROM rollup_day WHERE settlement_date = '2019-06-01'"))
    -- and its days are no longer loaded: a report of them says so, not "no curtailment"
    assert.is_nil(db:query_one([[SELECT 1 AS x FROM curtailment_loaded_days
      WHERE settlement_date BETWEEN '2019-01-01' AND '2019-12-31']]))
    -- which is quarry's own write, not one made outside it
    assert.is_nil(db:query_one([[SELECT 1 AS x FROM quarry_outside_writes
      WHERE settlement_date BETWEEN '2019-01-01' AND '2019-12-31']]))
    _, err, code = q("rollup verify --from 2019-01-01 --to 2019-12-31")
    assert.are.equal(0, code, err)
    assert.not_matches("detached curtailment_records_y" .. (year - 3), detached) -- within retention
    assert.are.equal("r", relkind("curtailment_records_y2019")) -- kept as a plain table
    assert.is_nil(db:query_one([[SELECT 1 AS x FROM pg_inherits WHERE inhrelid = 'curtailment_records_y2019'::regclass]]))
    assert.are.same({}, partition.maintain(db, "curtailment_records", plan)) -- idempotent
    _, err, code = q("partition rollback curtailment_records")
    assert.are.equal(2, code)
    assert.matches("nothing to roll back", err)
  end)
end)

describe("partition commands at once", function()
  it("refuse a second command on a table while one runs, with a clear message", function()
    local url = h.database_url()
    local holder = h.db({ max_size = 1 })
    local conn <close> = holder:acquire()
    -- what a running `quarry partition apply curtailment_records` holds
    conn:query("SELECT pg_advisory_lock(hashtext('quarry.partition'), hashtext('curtailment_records'))")
    for _, verb in ipairs({ "apply", "rollback", "maintain", "finish" }) do
      local _, err, code = h.quarry("partition " .. verb .. " curtailment_records", { DATABASE_URL = url })
      assert.are.equal(2, code, verb .. ": " .. err)
      assert.matches("another quarry partition command .* is working on curtailment_records", err)
      assert.not_matches("SQLSTATE", err)
    end
    conn:query("SELECT pg_advisory_unlock(hashtext('quarry.partition'), hashtext('curtailment_records'))")
    conn:release()
    holder:close()
  end)
end)
