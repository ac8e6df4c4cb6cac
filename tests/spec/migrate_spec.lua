-- lua/quarry/migrate.lua and lua/quarry/schema.lua against a fresh database.
local h = require "spec.helper"
local migrate = require "quarry.migrate"
local dbmod = require "quarry.db"
local core = require "quarry.core"

describe("migrations", function()
  local admin, db, url
  setup(function()
    admin = h.db({ max_size = 1 })
    admin:exec("DROP DATABASE IF EXISTS quarry_migrate_spec")
    admin:exec("CREATE DATABASE quarry_migrate_spec")
    url = h.database_url():gsub("/quarry%?", "/quarry_migrate_spec?")
    db = dbmod.new(core.pool_new({ conninfo = url, max_size = 2 }, core.timings_new()))
  end)
  teardown(function()
    db:close()
    admin:exec("DROP DATABASE IF EXISTS quarry_migrate_spec")
    admin:close()
  end)

  it("reports pending migrations on an empty database and refuses to run reports", function()
    local st = migrate.status(db)
    assert.is_nil(st[1].applied_at)
    assert.has_error(function() migrate.require_current(db) end)
    -- a script's report.run is told the same, not "relation ... does not exist"
    local report = require "quarry.report"
    local plugin = report.find(require("quarry.services").root(), "daily")
    local ok, err = pcall(report.run, db, nil, plugin, report.params(plugin, { date = "2024-03-15" }), {})
    assert.is_false(ok)
    assert.matches("the database schema is not current %(migration 1 missing%): run 'quarry db migrate'",
      tostring(err.message or err))
  end)

  it("applies the schema once and is idempotent", function()
    local ran = migrate.up(db)
    local all = {}
    for i, m in ipairs(require("quarry.schema")) do all[i] = m.version end
    assert.are.same(all, ran)
    assert.are.same({}, migrate.up(db))
    migrate.require_current(db)
  end)

  it("creates the seed's tables with the contract's keys", function()
    local cols = {}
    for _, r in ipairs(db:query([[SELECT column_name FROM information_schema.columns
        WHERE table_name = 'curtailment_records' ORDER BY ordinal_position]])) do
      cols[#cols + 1] = r.column_name
    end
    assert.are.same({ "id", "settlement_date", "settlement_period", "farm_id", "lead_party_name", "volume",
      "payment", "original_price", "final_price", "so_flag", "cadl_flag", "created_at",
      "acceptance_id", "bid_offer", "bid_offer_pair_id" }, cols) -- the last three: what Elexon keys a row by
    -- two acceptances of one farm in one period are both kept
    local ins = [[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, volume, payment,
      original_price, final_price, so_flag) VALUES ('2024-03-01', 40, 'T_SGRWO-1', $1, $2, -5, -5, true)]]
    db:exec(ins, "-10.5", "52.5")
    db:exec(ins, "-4.25", "21.25")
    assert.are.equal(2, db:query_one("SELECT count(*) AS n FROM curtailment_records").n)
    -- bitcoin rows are unique per (date, period, farm, miner)
    local hbc = [[INSERT INTO historical_bitcoin_calculations (settlement_date, settlement_period, farm_id,
      miner_model, curtailed_energy, bitcoin_mined, difficulty, block_reward)
      VALUES ('2024-03-01', 40, 'T_SGRWO-1', 'S19J_PRO', 14.75, 0.001, 81.73e12, 6.25)]]
    db:exec(hbc)
    local ok, err = pcall(db.exec, db, hbc)
    assert.is_false(ok)
    assert.are.equal("23505", err.sqlstate)
    -- miner models from the domain facts
    local m = db:query_one("SELECT hashrate_th, power_watts FROM miner_models WHERE name = 'S9'")
    assert.are.same({ "13.5", "1323" }, { m.hashrate_th, m.power_watts })
  end)

  it("keeps on each dated table the indexes its partition plan declares, no more", function()
    -- every index is paid for on every ingest: one the plan (and so a
    -- partitioned copy) lacks is a cost no read was measured to need
    for tname, plan in pairs(require "quarry.defs.partitions") do
      local want, got = {}, {}
      for _, ix in ipairs(plan.indexes) do want[#want + 1] = table.concat(ix, ", ") end
      for _, r in ipairs(db:query([[
          SELECT substring(pg_get_indexdef(indexrelid) FROM '\((.*)\)$') AS cols FROM pg_index
          WHERE indrelid = $1::regclass AND NOT indisunique ORDER BY 1]], tname)) do
        got[#got + 1] = r.cols
      end
      table.sort(want)
      assert.are.same(want, got, tname)
    end
  end)

  it("refuses a database a newer quarry migrated: reports, writes and migrate alike, the rollups untouched", function()
    migrate.up(db)
    local rollup_cols = [[SELECT string_agg(attname, ',' ORDER BY attnum) AS c FROM pg_attribute
      WHERE attrelid = 'rollup_day'::regclass AND attnum > 0 AND NOT attisdropped]]
    -- the newer quarry's rollup has a column this one does not declare: its migrate would rebuild it
    db:exec("ALTER TABLE rollup_day ADD COLUMN from_the_future int NOT NULL DEFAULT 0")
    db:exec("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from a newer quarry')")
    local cols = db:query_one(rollup_cols).c
    local rows = db:query_one("SELECT count(*)::int AS n FROM curtailment_records").n
    local u = h.shell_quote(url)
    for _, args in ipairs({ "db migrate", "report daily --date 2031-05-01", "report monthly --month 2031-05" }) do
      local _, err, code = h.quarry("--database-url " .. u .. " " .. args)
      assert.are.equal(2, code, args)
      assert.matches("the database schema is at version 9999, newer than this quarry knows %(%d+%)", err)
    end
    local csv = h.write(h.tmpname(".csv"), "settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,"
      .. "original_price,final_price,so_flag,cadl_flag\n2031-05-01,1,T_FARR-1,P,-1,-80,-80,-80,true,false\n")
    local _, err, code = h.quarry("--database-url " .. u .. " ingest curtailment " .. csv)
    assert.are.equal(2, code)
    assert.matches("newer than this quarry knows", err)
    os.remove(csv)
    assert.are.equal(cols, db:query_one(rollup_cols).c) -- migrate did not rebuild it to the older declaration
    assert.are.equal(rows, db:query_one("SELECT count(*)::int AS n FROM curtailment_records").n)
    local out
    out, _, code = h.quarry("--database-url " .. u .. " db status")
    assert.are.equal(1, code)
    assert.matches("9999  applied    from a newer quarry %(NEWER than this quarry%)", out)
    db:exec("DELETE FROM schema_migrations WHERE version = 9999")
    db:exec("ALTER TABLE rollup_day DROP COLUMN from_the_future")
  end)

  it("marks the days holding rows no load loaded (written by hand before writes were noted) as such", function()
    h.unseen_write(db, "DELETE FROM schema_migrations WHERE version = 15",
      [[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, volume, payment, original_price,
        final_price, so_flag) VALUES ('2024-04-02', 3, 'T_SGRWO-1', -1, 5, -5, -5, true)]],
      "INSERT INTO curtailment_loaded_days (settlement_date, source) VALUES ('2024-04-03', 'csv')",
      [[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, volume, payment, original_price,
        final_price, so_flag) VALUES ('2024-04-03', 3, 'T_SGRWO-1', -1, 5, -5, -5, true)]])
    assert.are.same({ 15 }, migrate.up(db))
    local src = {}
    for _, r in ipairs(db:query([[SELECT settlement_date::text AS d, source FROM curtailment_loaded_days
        WHERE settlement_date IN ('2024-04-02', '2024-04-03')]])) do
      src[r.d] = r.source
    end
    assert.are.same({ ["2024-04-02"] = "outside", ["2024-04-03"] = "csv" }, src)
    h.unseen_write(db, "DELETE FROM curtailment_records WHERE settlement_date IN ('2024-04-02', '2024-04-03')",
      "DELETE FROM curtailment_loaded_days WHERE settlement_date IN ('2024-04-02', '2024-04-03')")
  end)

  it("takes the advisory-locking functions from PUBLIC when a superuser migrates, keeping them for quarry", function()
    local su = dbmod.new(core.pool_new({ conninfo = url:gsub("//quarry@", "//postgres@"), max_size = 1 },
      core.timings_new()))
    local FNS = { "pg_advisory_lock(bigint)", "pg_try_advisory_xact_lock(integer, integer)" }
    local function may(role, fn)
      return su:query_one("SELECT has_function_privilege($1, $2, 'EXECUTE') AS may", role, fn).may
    end
    for _, fn in ipairs(FNS) do su:exec(("GRANT EXECUTE ON FUNCTION pg_catalog.%s TO PUBLIC"):format(fn)) end
    assert.is_true(may("quarry_reader", FNS[1])) -- as before migration 16
    su:exec("DELETE FROM schema_migrations WHERE version = 16")
    assert.are.same({ 16 }, migrate.up(su))
    for _, fn in ipairs(FNS) do
      assert.is_false(may("quarry_reader", fn), fn)
      assert.is_true(may("quarry", fn), fn) -- the database's owner: quarry's own writers lock
    end
    assert.is_true(may("quarry_reader", "pg_advisory_unlock_all()"))
    su:close()
  end)

  it("lets two processes migrate at once", function()
    admin:exec("DROP DATABASE quarry_migrate_spec WITH (FORCE)")
    admin:exec("CREATE DATABASE quarry_migrate_spec")
    local rc = { h.tmpname(), h.tmpname() }
    local cmd = "%s --database-url %s db migrate >/dev/null 2>&1; echo $? > %s"
    local a = cmd:format(h.shell_quote(h.bin), h.shell_quote(url), rc[1])
    local b = cmd:format(h.shell_quote(h.bin), h.shell_quote(url), rc[2])
    os.execute(("(%s) & (%s) & wait"):format(a, b))
    assert.are.equal("0\n", h.read(rc[1]))
    assert.are.equal("0\n", h.read(rc[2]))
    os.remove(rc[1]); os.remove(rc[2])
    local out, err, code = h.quarry("--database-url " .. h.shell_quote(url) .. " db status")
    assert.are.equal(0, code, err)
    assert.matches("applied", out)
    assert.not_matches("PENDING", out)
  end)
end)
