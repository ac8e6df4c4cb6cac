-- lua/quarry/outside.lua: a write made outside quarry (psql, a script's
-- db:exec) is noted by the triggers and mended before any figure of its
-- dates is served, cached or not; quarry's own writes are not noted.
local h = require "spec.helper"
local cjson = require "cjson"

local DBNAME = "quarry_outside_spec"
local URL, db
local ENV = { QUARRY_CACHE_PREFIX = "outside-spec:" }
local FARM = "T_DOREW-1,Dorenell Windfarm Limited"

local function totals(args, env)
  local out, err, code = h.quarry("report monthly --month 2034-05 --format json " .. (args or ""), env or ENV)
  assert(code == 0, err)
  return cjson.decode(out).totals, err
end

local function noted()
  local out = {}
  for _, r in ipairs(db:query("SELECT settlement_date::text AS d FROM quarry_outside_writes ORDER BY 1")) do
    out[#out + 1] = r.d
  end
  return out
end

local function days_with_data()
  return db:query_one([[SELECT count(*)::int AS n FROM (SELECT settlement_date FROM curtailment_loaded_days
    UNION SELECT settlement_date FROM curtailment_records) s]]).n
end

-- bitcoin of one farm-period as the formula gives it, from the stored volume
local function stored_btc(day)
  return tonumber(db:query_one([[SELECT sum(bitcoin_mined)::text AS b FROM historical_bitcoin_calculations
    WHERE settlement_date = $1 AND miner_model = 'S19J_PRO']], day).b)
end

-- another session on the spec's database (as user, else quarry's)
local function session(user)
  local url = user and URL:gsub("^postgresql://[^@/]*@", "postgresql://" .. user .. "@") or URL
  return require("quarry.db").new(require("quarry.core").pool_new({ conninfo = url, max_size = 1 },
    require("quarry.core").timings_new()))
end

-- roles are made by the cluster's superuser (the embedded one trusts local users)
local function as_admin(...)
  local admin = session("postgres")
  for _, sql in ipairs({ ... }) do admin:exec(sql) end
  admin:close()
end

teardown(function()
  db:close()
  h.drop_database(DBNAME)
end)

setup(function()
  URL, db = h.scratch_database(DBNAME)
  ENV.DATABASE_URL = URL
  require("quarry.migrate").up(db)
  require("quarry.write").dated(db, nil, { tables = { "historical_bitcoin_calculations" }, bitcoin = true },
    function(tx, w)
      tx:exec("INSERT INTO bitcoin_difficulty (effective_date, difficulty) VALUES ('2034-05-01', 100e12), "
        .. "('2034-05-20', 200e12) ON CONFLICT (effective_date) DO NOTHING")
      w:dates({})
    end)
  h.ingest_rows({
    "2034-05-03,10," .. FARM .. ",-20,-1600,-80,-80,true,false",
    "2034-05-10,11," .. FARM .. ",-30,-2400,-80,-80,true,false",
    "2034-05-25,12," .. FARM .. ",-40,-3200,-80,-80,true,false",
  }, ENV, "2034-05-01..2034-05-31")
end)

describe("writes made outside quarry", function()
  it("are not noted when quarry makes them", function()
    assert.are.same({}, noted()) -- the ingest above, the difficulty through write.dated
    for _, args in ipairs({ "db seed --from 2024-03-01 --to 2024-03-03", "miners add S21_QUARRY --hashrate-th 200 "
        .. "--watts 3500", "miners recalculate --from 2034-05-01 --to 2034-05-31", "rollup rebuild --from 2034-05-01 "
        .. "--to 2034-05-31", "rollup refresh --date 2034-05-03" }) do
      local _, err, code = h.quarry(args, ENV)
      assert.are.equal(0, code, err)
      assert.are.same({}, noted(), args)
    end
  end)

  it("are mended before a cached figure of their dates is served", function()
    assert.are.equal(90, tonumber(totals().curtailed_mwh))
    assert.are.equal(90, tonumber(totals().curtailed_mwh)) -- cached now
    local btc = stored_btc("2034-05-03")
    db:exec("UPDATE curtailment_records SET volume = -60 WHERE settlement_date = '2034-05-03'") -- as psql would
    assert.are.same({ "2034-05-03" }, noted())
    local t, err = totals()
    assert.are.equal(130, tonumber(t.curtailed_mwh))
    assert.matches("1 date(s) changed outside quarry (2034-05-03)", err, 1, true)
    assert.are.same({}, noted())
    assert.near(btc * 3, stored_btc("2034-05-03"), 1e-12) -- the bitcoin follows the volume
    local _, verr, code = h.quarry("rollup verify --from 2034-05-01 --to 2034-05-31", ENV)
    assert.are.equal(0, code, verr)
  end)

  it("are mended for a report computed without the cache, and a rangeless one", function()
    db:exec("DELETE FROM historical_bitcoin_calculations WHERE settlement_date = '2034-05-10'")
    local t = totals("--no-cache", { QUARRY_CACHE = "off", DATABASE_URL = URL })
    assert.are.equal(130, tonumber(t.curtailed_mwh))
    assert.is_true(stored_btc("2034-05-10") > 0)
    db:exec("UPDATE curtailment_records SET payment = -2500 WHERE settlement_date = '2034-05-10'")
    local _, err, code = h.quarry("report integrity --format json", { QUARRY_CACHE = "off", DATABASE_URL = URL })
    assert.are.equal(0, code, err)
    assert.are.same({}, noted())
  end)

  it("of a difficulty point reach the days it is in force for, and only those", function()
    db:exec("UPDATE bitcoin_difficulty SET difficulty = 50e12 WHERE effective_date = '2034-05-01'")
    local list = noted()
    assert.are.equal(19, #list) -- the loaded days to 2034-05-19: 2034-05-20 on has its own point
    assert.are.equal("2034-05-01", list[1])
    assert.are.equal("2034-05-19", list[19])
    local before = stored_btc("2034-05-25")
    local b3 = stored_btc("2034-05-03")
    totals()
    assert.near(b3 * 2, stored_btc("2034-05-03"), 1e-12) -- half the difficulty: twice the bitcoin
    assert.are.equal(before, stored_btc("2034-05-25"))
  end)

  it("after a quarry write nested in a script's transaction are the script's own, and noted", function()
    local ok, err = db:transaction(function(tx)
      require("quarry.write").dated(tx, nil, { tables = { "curtailment_records" } }, function(t, w)
        t:exec("UPDATE curtailment_records SET volume = -21 WHERE settlement_date = '2034-05-03'")
        w:dates({ "2034-05-03" })
      end)
      tx:exec("UPDATE curtailment_records SET volume = -31 WHERE settlement_date = '2034-05-10'")
    end)
    assert(ok, err)
    assert.are.same({ "2034-05-10" }, noted())
    assert.are.equal(92, tonumber(totals().curtailed_mwh)) -- 21 + 31 + 40
  end)

  it("by a role that may change curtailment but not the list are noted, not refused", function()
    as_admin("DROP ROLE IF EXISTS quarry_outside_spec", "CREATE ROLE quarry_outside_spec",
      "GRANT quarry_outside_spec TO quarry", "GRANT SELECT, UPDATE ON curtailment_records TO quarry_outside_spec")
    local ok, err = db:transaction(function(tx)
      tx:exec("SET LOCAL ROLE quarry_outside_spec")
      tx:exec("UPDATE curtailment_records SET volume = -22 WHERE settlement_date = '2034-05-03'")
    end)
    as_admin("DROP OWNED BY quarry_outside_spec", "DROP ROLE quarry_outside_spec")
    assert(ok, err)
    assert.are.same("quarry_outside_spec",
      db:query_one("SELECT noticed_role FROM quarry_outside_writes WHERE settlement_date = '2034-05-03'").noticed_role)
    assert.are.equal(93, tonumber(totals().curtailed_mwh))
  end)

  it("that cannot be mended fail the report with the reason: no stale figure, the cache not trusted", function()
    as_admin("DROP ROLE IF EXISTS quarry_outside_ro", "CREATE ROLE quarry_outside_ro LOGIN IN ROLE quarry_reader",
      "GRANT SELECT ON ALL TABLES IN SCHEMA public TO quarry_outside_ro")
    local url = URL:gsub("^postgresql://[^@/]*@", "postgresql://quarry_outside_ro@")
    local ro = { DATABASE_URL = url, QUARRY_CACHE_PREFIX = ENV.QUARRY_CACHE_PREFIX }
    assert.are.equal(93, tonumber(totals(nil, ro).curtailed_mwh)) -- cached, nothing to mend: it reads
    db:exec("UPDATE curtailment_records SET volume = -23 WHERE settlement_date = '2034-05-03'")
    local out, err, code = h.quarry("report monthly --month 2034-05 --format json", ro)
    assert.are.equal(1, code, out)
    assert.matches("1 date(s) changed outside quarry (2034-05-03) could not be brought up to date", err, 1, true)
    assert.matches("permission denied", err)
    assert.are.equal("", out)
    as_admin("DROP OWNED BY quarry_outside_ro", "DROP ROLE quarry_outside_ro")
    assert.are.same({ "2034-05-03" }, noted()) -- still listed: the next writer-able reader mends it
    assert.are.equal(94, tonumber(totals().curtailed_mwh))
  end)

  it("are mended on demand by rollup refresh, and db status lists them until then", function()
    db:exec("UPDATE curtailment_records SET volume = -24 WHERE settlement_date = '2034-05-03'")
    local out = h.quarry("db status", ENV)
    assert.matches("changed outside quarry: 1 date(s) (2034-05-03; last by", out, 1, true)
    local o2, err, code = h.quarry("rollup refresh", ENV)
    assert.are.equal(0, code, err)
    assert.matches("mended 1 date(s) changed outside quarry", o2, 1, true)
    assert.are.same({}, noted())
    assert.matches("no dates changed outside quarry", (h.quarry("rollup refresh", ENV)))
    assert.is_nil((h.quarry("db status", ENV)):find("changed outside quarry", 1, true))
  end)

  it("by two readers at once are mended once, both answering the new figure", function()
    db:exec("UPDATE curtailment_records SET volume = -25 WHERE settlement_date = '2034-05-03'")
    local outs = {}
    for i = 1, 2 do outs[i] = h.tmpname(".json") end
    local cmds = {}
    for i = 1, 2 do
      cmds[i] = ("DATABASE_URL=%s QUARRY_CACHE_PREFIX=%s %s report monthly --month 2034-05 --format json > %s &")
        :format(h.shell_quote(URL), ENV.QUARRY_CACHE_PREFIX, h.shell_quote(h.bin), outs[i])
    end
    os.execute(table.concat(cmds, " ") .. " wait")
    for i = 1, 2 do
      local text = h.read(outs[i])
      os.remove(outs[i])
      assert.are.equal(96, tonumber(cjson.decode(text).totals.curtailed_mwh), text)
    end
    assert.are.same({}, noted())
  end)

  it("stay listed when the mender is killed with kill -9 mid-way; the next read mends them", function()
    db:exec("UPDATE curtailment_records SET volume = -26 WHERE settlement_date = '2034-05-03'")
    local holder = session()
    -- another writer of that date holds its date lock: the mender waits there, and is killed there
    h.kill_while_waiting(db, holder, function(tx)
      tx:exec("SELECT pg_advisory_xact_lock(hashtext('quarry.date'), DATE '2034-05-03' - DATE '2000-01-01')")
    end, ("DATABASE_URL=%s QUARRY_CACHE=off %s report monthly --month 2034-05"):format(h.shell_quote(URL),
      h.shell_quote(h.bin)), "wait_event = 'advisory'")
    holder:close()
    assert.are.same({ "2034-05-03" }, noted())
    assert.are.equal(97, tonumber(totals().curtailed_mwh))
    assert.are.same({}, noted())
  end)

  it("to the loaded days reach the coverage of a cached report", function()
    local out = h.quarry("report monthly --month 2034-05 --format json", ENV)
    assert.are.equal(31, cjson.decode(out).coverage.loaded)
    db:exec("DELETE FROM curtailment_loaded_days WHERE settlement_date = '2034-05-31'")
    out = h.quarry("report monthly --month 2034-05 --format json", ENV)
    assert.are.equal(30, cjson.decode(out).coverage.loaded)
    db:exec("INSERT INTO curtailment_loaded_days (settlement_date, source) VALUES ('2034-05-31', 'csv')")
    out = h.quarry("report monthly --month 2034-05 --format json", ENV)
    assert.are.equal(31, cjson.decode(out).coverage.loaded)
    assert.are.same({}, noted())
  end)

  it("on a day no load loaded make it loaded, saying so in every report of it; gone again, it is unloaded",
      function()
    local function june(args)
      local out, err, code = h.quarry("report monthly --month 2034-06 --format json " .. (args or ""), ENV)
      assert.are.equal(0, code, err)
      return cjson.decode(out)
    end
    local r = june()
    assert.are.equal(0, r.coverage.loaded) -- cached: nothing of June loaded
    db:exec([[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, lead_party_name, volume,
      payment, original_price, final_price, so_flag, cadl_flag)
      VALUES ('2034-06-15', 5, 'T_DOREW-1', 'Dorenell Windfarm Limited', -10, -800, -80, -80, true, false)]])
    for _, args in ipairs({ "", "--no-cache" }) do
      r = june(args)
      assert.are.equal(10, tonumber(r.totals.curtailed_mwh))
      -- counted as loaded (not summed under "no data loaded for 2034-06-15"), and said to be written by hand
      assert.are.equal(1, r.coverage.loaded)
      assert.are.equal(1, r.coverage.written_outside_days)
      assert.are.same({ { "2034-06-15", "2034-06-15" } }, r.coverage.written_outside)
      assert.matches("1 day(s) (2034-06-15) hold only rows written outside quarry", r.footer, 1, true)
    end
    local out = h.quarry("report daily --date 2034-06-15", ENV)
    assert.matches("hold only rows written outside quarry", out, 1, true)
    assert.not_matches("no data loaded", out, 1, true)
    out = h.quarry("report integrity --month 2034-06 --format csv", ENV)
    assert.matches("dates holding only rows written outside quarry,2034-06-15", out, 1, true)
    -- such a day is as unknown as an unloaded one to a merge, and a seed never replaces it
    local csv = h.curtailment_csv({ "2034-06-15,6," .. FARM .. ",-5,-400,-80,-80,true,false" })
    local _, err, code = h.quarry("ingest curtailment --farms-only " .. csv, ENV)
    os.remove(csv)
    assert.are.equal(2, code, err)
    assert.matches("2034-06-15 holds only rows written outside quarry", err, 1, true)
    _, err, code = h.quarry("db seed --from 2034-06-15 --to 2034-06-15", ENV)
    assert.are.equal(2, code, err)
    assert.matches("writes made outside quarry", err, 1, true)
    db:exec("DELETE FROM curtailment_records WHERE settlement_date = '2034-06-15'")
    r = june()
    assert.are.equal(0, r.coverage.loaded)
    assert.are.equal(0, r.coverage.written_outside_days)
    assert.are.same({}, noted())
  end)

  it("whose bitcoin cannot be computed stay listed with the reason; other dates are served", function()
    db:exec([[INSERT INTO curtailment_records (settlement_date, settlement_period, farm_id, lead_party_name, volume,
      payment, original_price, final_price, so_flag, cadl_flag)
      VALUES ('2034-08-10', 5, 'T_DOREW-1', 'Dorenell Windfarm Limited', -10, -800, -80, -80, true, false)]])
    assert.are.equal(97, tonumber(totals().curtailed_mwh)) -- no difficulty in August: May is still served
    local out, err, code = h.quarry("report daily --date 2034-08-10", ENV)
    assert.are.equal(2, code, out)
    assert.matches("2034-08-10 was changed outside quarry and cannot be brought up to date", err, 1, true)
    assert.matches("no bitcoin difficulty known for 2034-08-10", err, 1, true)
    assert.matches("2034-08-10 cannot be mended yet: no bitcoin difficulty known", (h.quarry("db status", ENV)), 1, true)
    out, err, code = h.quarry("rollup refresh", ENV)
    assert.are.equal(1, code, out)
    assert.matches("1 date(s) changed outside quarry cannot be mended yet", err, 1, true)
    local csv = h.write(h.tmpname(".csv"), "date,difficulty\n2034-08-01,100e12\n")
    local _, derr, dcode = h.quarry("ingest difficulty " .. csv, ENV)
    os.remove(csv)
    assert.are.equal(0, dcode, derr)
    out, err, code = h.quarry("report daily --date 2034-08-10 --format json", ENV)
    assert.are.equal(0, code, err)
    assert.are.equal(10, tonumber(cjson.decode(out).totals.curtailed_mwh))
    assert.is_true(stored_btc("2034-08-10") > 0)
    assert.are.same({}, noted())
  end)

  it("of a miner model reach every day with data; a TRUNCATE of the bitcoin rows is mended whole", function()
    db:exec("INSERT INTO miner_models (name, hashrate_th, power_watts) VALUES ('S21_SPEC', 200, 3500)")
    -- every day with data: May 2034 and the seeded days loaded, and 2034-08-10 with rows written in psql
    assert.are.equal(days_with_data(), #noted())
    assert.is_true(#noted() >= 32)
    local out, err, code = h.quarry("report monthly --month 2034-05 --format json", ENV)
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    local has = false
    for _, f in ipairs(r.fields) do has = has or f.name == "btc_S21_SPEC" end
    assert.is_true(has, "the new model's column")
    assert.is_true(tonumber(r.totals.btc_S21_SPEC) > 0)
    local before = stored_btc("2034-05-25")
    local august = stored_btc("2034-08-10")
    db:exec("TRUNCATE historical_bitcoin_calculations")
    assert.are.equal(days_with_data(), #noted())
    assert.are.equal(97, tonumber(totals().curtailed_mwh))
    assert.are.equal(before, stored_btc("2034-05-25"))
    assert.are.equal(august, stored_btc("2034-08-10"))
    assert.are.same({}, noted())
  end)
end)
