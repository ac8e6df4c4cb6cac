-- lua/quarry/report.lua: the report runner -- params from the command line
-- and from scripts, and the sandbox every plugin runs in, tried as an
-- attacker would. The shipped reports' figures are in plugins_spec.
local h = require "spec.helper"
local quarry = require "quarry"
local cjson = require "cjson"
local core = require "quarry.core"

local db = quarry.db
local it_session = h.behind_pooler and pending or it
local ENV = { QUARRY_CACHE_PREFIX = "report-spec:" }

local report, json_report = h.reporter(ENV)

-- The spec's environment with a folder of plugins, plus extra settings.
local function env_for(dir, extra)
  local env = { QUARRY_PLUGIN_PATH = dir }
  for k, v in pairs(ENV) do env[k] = v end
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

setup(function() h.load_may_2031(db, ENV) end)

describe("report parameters", function()
  local cases = {
    { "monthly --month 2031-13", "not a month" },
    { "monthly", "needs --month" },
    { "monthly --month 2031-05 --miner NOPE", "unknown miner model (known: M20S, S19J_PRO, S9)" },
    { "monthly --month 2031-05 --farm \"x'; DROP TABLE curtailment_records; --\"", "is not a BMU id" },
    { "daily --date 2031-02-30", "is not a date" },
    { "yearly --year 31", "is not a year" },
    { "farms --month 2031-05 --limit ten", "is not an integer" },
    { "farms --month 2031-05 --by colour", "expected one of farm, lead_party" },
    { "monthly --month 2031-05 --date 2031-05-01", "unknown option '--date'" },
    { "nosuchreport", "unknown report 'nosuchreport'" },
    { "farms", "needs --date, --month, --quarter or --year" },
    { "farms --quarter 2031-Q5", "is not a quarter" },
    { "farms --quarter 2031-Q2 --sort money", "expected one of curtailed_mwh, paid_gbp, btc" },
  }
  for _, c in ipairs(cases) do
    it("refuses " .. c[1] .. " with exit 2", function()
      local _, err, code = report(c[1])
      assert.are.equal(2, code, err)
      assert.matches(c[2]:gsub("%p", "%%%0"), err)
    end)
  end

  it("treats a SQL-looking lead party as a plain value: an unknown one, refused, nothing changed", function()
    local _, err, code = report("monthly --month 2031-05 --lead-party \"'; DROP TABLE curtailment_records; --\"")
    assert.are.equal(2, code, err)
    assert.matches("unknown lead party %(nearest: ", err)
    assert.are.equal(4, db:query_one([[SELECT count(*) AS n FROM curtailment_records
      WHERE settlement_date BETWEEN '2031-05-01' AND '2031-05-31']]).n)
  end)

  it("looks miner models and farms up in the report's transaction: an unknown one is refused "
    .. "through the cache too, before the plugin runs, and nothing is cached for it", function()
    local prefix = "report-spec-known-" .. core.now_ns() .. ":"
    local env = { QUARRY_CACHE_PREFIX = prefix }
    for _ = 1, 2 do -- the second time is not answered from anything the first left
      local _, err, code = h.quarry("report monthly --month 2031-05 --miner NOPE2", env)
      assert.are.equal(2, code, err)
      assert.matches("unknown miner model", err)
      _, err, code = h.quarry("report monthly --month 2031-05 --farm T_NOPE-1", env)
      assert.are.equal(2, code, err)
      assert.matches("unknown farm", err)
    end
    local cache = require("quarry.cache").new({ url = h.urls().REDIS_URL, prefix = prefix })
    assert.are.same({}, cache.conn:call("KEYS", prefix .. "*NOPE*"))
    -- and a known one is computed, then answered from the cache, as ever
    local out1 = h.quarry("report monthly --month 2031-05 --miner S9 --format csv", env)
    local out2, err, code = h.quarry("report monthly --month 2031-05 --miner S9 --format csv", env)
    assert.are.equal(0, code, err)
    assert.are.equal(out1, out2)
    assert.are_not.same({}, cache.conn:call("KEYS", prefix .. "*S9*"))
    cache:clear()
    -- a plugin's own code never sees an unknown value
    local dir = h.tmpname(".plugins")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/sees.lua", [[return { name = "sees", description = "test",
      params = { miner = { type = "miner", required = true }, farm = { type = "farm" } },
      run = function(ctx, p) error("ran with " .. p.miner .. " " .. tostring(p.farm)) end }]])
    for _, args in ipairs({ "--miner NOPE3", "--miner S9 --farm T_NOPE-2" }) do
      local _, e, c = h.quarry("report sees " .. args, env_for(dir))
      assert.are.equal(2, c, e)
      assert.matches("unknown", e)
      assert.is_nil(e:find("ran with", 1, true))
    end
    os.execute("rm -rf " .. dir)
  end)

  it("refuses an unknown farm, suggesting the nearest known ones", function()
    local _, err, code = report("monthly --month 2031-05 --farm T_SGRWO-9")
    assert.are.equal(2, code, err)
    assert.matches("%-%-farm 'T_SGRWO%-9'[^\n]*: unknown farm %(nearest: T_SGRWO%-", err)
    local r = json_report("monthly --month 2031-05 --farm T_SGRWO-1") -- a known one still answers
    assert.is_table(r.rows)
  end)
end)

describe("a plugin's own params", function()
  it("are flags of quarry report, and params of report.run in a script, with no edit outside the plugin", function()
    local dir = h.tmpname(".own")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/above.lua", [[return {
      name = "above", description = "Days above a threshold",
      params = { month = { type = "month", required = true }, min_mwh = { type = "integer", default = 0, min = 0 },
                 unit = { type = "choice", choices = { "mwh", "gwh" }, default = "mwh" } },
      cache = { key = "above:{month}:{min_mwh}:{unit}", ttl = "SHORT" },
      run = function(ctx, p)
        local from, to = ctx.range(p)
        return ctx.query("SELECT settlement_date::text AS day, sum(-volume) / $4 AS curtailed FROM curtailment_records "
          .. "WHERE settlement_date BETWEEN $1::date AND $2::date GROUP BY 1 HAVING sum(-volume) > $3 ORDER BY 1",
          from, to, p.min_mwh, p.unit == "gwh" and 1000 or 1)
      end }]])
    local env = env_for(dir)
    -- `quarry report --help` with no report named lists every report's params, this one's and the shipped ones'
    local help = h.quarry("report --help", env)
    for _, flag in ipairs({ "%-%-min%-mwh", "%-%-unit <unit> +One of: mwh, gwh%.", "%-%-quarter", "%-%-sort",
                            "%-%-by <by> +One of: farm, lead_party, day, month%." }) do
      assert.matches(flag, help)
    end
    local out, err, code = h.quarry("report above --month 2031-05 --min-mwh 31 --unit gwh --format json", env)
    assert.are.equal(0, code, err)
    local r = cjson.decode(out)
    assert.are.equal(1, #r.rows) -- 2031-05-01 has 35 MWh, 2031-05-02 has 30
    assert.are.equal("2031-05-01", r.rows[1].day)
    assert.are.equal(0.035, tonumber(r.rows[1].curtailed))
    local _
    _, err, code = h.quarry("report above --month 2031-05 --unit tonnes", env)
    assert.are.equal(2, code)
    assert.matches("%-%-unit 'tonnes': expected one of mwh, gwh", err)
    _, err, code = h.quarry("report above --month 2031-05 --min-mwh=-1", env)
    assert.are.equal(2, code)
    assert.matches("out of range", err)
    out = h.quarry("report above --help", env)
    assert.matches("%-%-min%-mwh", out)
    assert.matches("One of: mwh, gwh", out)
    -- the same plugin from a script, through the runner
    local script = h.write(h.tmpname(".lua"), ([[
local quarry = require "quarry"
local report = require "quarry.report"
local plugin = report.load_file(%q)
local p = report.params(plugin, { month = "2031-05", min_mwh = "29" })
print(#report.run(quarry.db, nil, plugin, p, { no_cache = true }).result.rows)]]):format(dir .. "/above.lua"))
    out, err, code = h.quarry("run " .. script, env)
    assert.are.equal(0, code, err)
    assert.are.equal("2\n", out)
    os.remove(script)
    os.execute("rm -rf " .. dir)
  end)
end)

describe("a plugin folder with a file that does not load", function()
  it("lists and runs the others, and names the broken file wherever reports are listed", function()
    local dir = h.tmpname(".broken")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/halfdone.lua", "return { name = 'halfdone', run = function( end")
    h.write(dir .. "/fine.lua", [[return { name = "fine", description = "Works", params = {},
      run = function(ctx) return ctx.query("SELECT 1 AS one") end }]])
    local env = env_for(dir)
    local out, err, code = h.quarry("plugins", env)
    assert.are.equal(1, code, err) -- the listing is not whole, and the exit says so
    assert.matches("\nfine +Works\n", "\n" .. out)
    assert.matches("\nmonthly ", out) -- the shipped folder too
    -- each param with what it may be: a choice's choices, an integer's bounds, the default
    assert.matches("\n +%-%-sort curtailed_mwh|paid_gbp|btc %(default curtailed_mwh%)\n", out)
    assert.matches("\n +%-%-limit INTEGER %(1..10000%) %(default 20%)\n", out)
    assert.matches("halfdone%.lua:1: .* %(not listed%)", err)
    out, err, code = h.quarry("report fine --format csv", env)
    assert.are.equal(0, code, err)
    assert.matches("^one\r?\n1\r?\n$", out)
    out, err, code = h.quarry("report nosuch", env)
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("unknown report 'nosuch' %(reports: .*fine.*; not loading: halfdone%.lua%)", err)
    os.execute("rm -rf " .. dir)
  end)
end)

describe("the report cache", function()
  it("keys every param, even one the plugin's key template leaves out", function()
    local dir = h.tmpname(".forgot")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/forgot.lua", [[return {
      name = "forgot", description = "A key template without {unit}",
      params = { month = { type = "month", required = true },
                 unit = { type = "choice", choices = { "mwh", "gwh" }, default = "mwh" } },
      cache = { key = "forgot:{month}", ttl = "SHORT" },
      run = function(ctx, p)
        local from, to = ctx.range(p)
        return ctx.query("SELECT sum(-volume) / $3 AS curtailed FROM curtailment_records "
          .. "WHERE settlement_date BETWEEN $1::date AND $2::date", from, to, p.unit == "gwh" and 1000 or 1)
      end }]])
    local env = env_for(dir)
    local function curtailed(unit)
      local out, err, code = h.quarry("report forgot --month 2031-05 --format json --unit " .. unit, env)
      assert.are.equal(0, code, err)
      return tonumber(cjson.decode(out).rows[1].curtailed)
    end
    assert.are.equal(65, curtailed("mwh"))
    assert.are.equal(0.065, curtailed("gwh")) -- not the cached MWh figure
    assert.are.equal(65, curtailed("mwh"))
    os.execute("rm -rf " .. dir)
  end)
end)

describe("-o FILE", function()
  it("takes the format from the extension unless --format says otherwise, and refuses a contradiction", function()
    local dir = h.tmpname(".out")
    os.execute("mkdir -p " .. dir)
    for ext, start in pairs({ csv = "^settlement_date,", json = '^{"schema":"quarry.report/1"', html = "^<!DOCTYPE html>",
                              tsv = "^settlement_date\t", txt = "^Curtailment and bitcoin" }) do
      local path = dir .. "/monthly." .. ext
      local _, err, code = report("monthly --month 2031-05 --no-cache -o " .. path)
      assert.are.equal(0, code, err)
      assert.matches(start, h.read(path), 1, false)
    end
    local _, err, code = report("monthly --month 2031-05 --format json -o " .. dir .. "/x.csv")
    assert.are.equal(2, code)
    assert.matches("%-%-format json does not match .*x%.csv %(%.csv is csv%)", err)
    _, err, code = report("monthly --month 2031-05 --format json -o " .. dir .. "/x.data")
    assert.are.equal(0, code, err)
    assert.matches('^{"schema"', h.read(dir .. "/x.data"))
    os.execute("rm -rf " .. dir)
  end)
end)

describe("summary shapes", function()
  it("give a plugin the loaded days of a range, and refuse a range that is not one", function()
    local dir = h.tmpname(".coverage")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/cov.lua", [[return { name = "cov", description = "Coverage",
      params = { from = { type = "date", required = true }, to = { type = "date", required = true } },
      run = function(ctx, p)
        local c = ctx.coverage(p.from, p.to)
        return { fields = { { name = "days", type = "int8" }, { name = "loaded", type = "int8" } },
                 rows = { { days = c.days, loaded = c.loaded } } }
      end }]])
    local env = env_for(dir)
    local out, err, code = h.quarry("report cov --from 2031-05-01 --to 2031-05-31 --format json --no-cache", env)
    assert.are.equal(0, code, err)
    assert.are.same({ days = 31, loaded = 31 }, cjson.decode(out).rows[1]) -- May 2031, loaded whole
    local _
    _, err, code = h.quarry("report cov --from 2031-05-31 --to 2031-05-01 --no-cache", env)
    assert.are.equal(1, code)
    assert.matches("ctx.coverage: expected two dates, the first not after the second", err, 1, true)
    os.execute("rm -rf " .. dir)
  end)

  it("take a new shape from one declaration: week, from the rollups and the raw rows alike", function()
    local dir = h.tmpname(".shape")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/weekly.lua", [[return { name = "weekly", description = "By ISO week",
      params = { month = { type = "month", required = true }, farm = { type = "farm" } },
      run = function(ctx, p) return ctx.breakdown("week", p, "S9") end }]])
    local env = env_for(dir)
    local rolled = select(1, h.quarry("report weekly --month 2031-05 --format json --no-cache", env))
    local direct, err, code = h.quarry("report weekly --month 2031-05 --format json --direct", env)
    assert.are.equal(0, code, err)
    assert.are.equal(direct, rolled)
    local r = cjson.decode(rolled)
    assert.are.equal(5, #r.rows) -- the ISO weeks May 2031 touches
    assert.are.equal("2031-W18", r.rows[1].week) -- 2031-05-01 and 02 are in one
    assert.are.equal(65, tonumber(r.rows[1].curtailed_mwh))
    assert.are.equal(0, tonumber(r.rows[2].curtailed_mwh))
    local by_farm = select(1, h.quarry("report weekly --month 2031-05 --farm T_DOREW-1 --format json --no-cache", env))
    assert.are.equal(50, tonumber(cjson.decode(by_farm).rows[1].curtailed_mwh))
    os.execute("rm -rf " .. dir)
  end)

  it("refuses a breakdown by a shape that is not declared, naming the ones that are", function()
    local dir = h.tmpname(".shape")
    os.execute("mkdir -p " .. dir)
    h.write(dir .. "/bad_shape.lua", [[return { name = "bad_shape", description = "x",
      params = { month = { type = "month", required = true } },
      run = function(ctx, p) return ctx.breakdown("fortnight", p) end }]])
    local env = env_for(dir)
    local _, err, code = h.quarry("report bad_shape --month 2031-05 --no-cache", env)
    assert.are.equal(2, code, err)
    assert.matches("no breakdown by 'fortnight' %(lua/quarry/defs/summaries.lua has all, day, farm", err)
    os.execute("rm -rf " .. dir)
  end)
end)

describe("plugin sandbox", function()
  local dir
  setup(function()
    dir = h.tmpname(".plugins")
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  local function plugin(name, body)
    h.write(dir .. "/" .. name .. ".lua", ([[
return { name = "%s", description = "test", params = {},
         run = function(ctx, p) %s end }]]):format(name, body))
  end

  -- The spec's environment with the plugin folder, plus extra settings.
  local function env_with(extra)
    local env = env_for(dir)
    for k, v in pairs(extra or {}) do env[k] = v end
    return env
  end

  local function run(name)
    return h.quarry("report " .. name, env_with())
  end

  it("has no os.execute, io, require, load or debug", function()
    for name, body in pairs({ sb_exec = "os.execute('touch /tmp/quarry-pwned')", sb_io = "io.open('/etc/passwd')",
                              sb_req = "require('os')", sb_load = "load('return 1')", sb_dbg = "debug.sethook()" }) do
      plugin(name, body)
      local _, err, code = run(name)
      assert.are.equal(1, code, name)
      assert.matches("nil value", err)
    end
    assert.is_nil(io.open("/tmp/quarry-pwned"))
  end)

  it("runs ctx.parallel's functions on their own connections, in one snapshot, inside the sandbox", function()
    plugin("sb_par", [[
      local SQL = "SELECT pg_backend_pid() AS pid, pg_current_snapshot()::text AS snap, current_user AS who, "
        .. "current_setting('transaction_read_only') AS ro"
      local main = ctx.query_one(SQL)
      local a, b = ctx.parallel(function(c) return c.query_one(SQL) end, function(c) return c.query_one(SQL) end)
      local fields = { { name = "pid", type = "int4" }, { name = "snap", type = "text" }, { name = "who", type = "text" },
                       { name = "ro", type = "text" } }
      return { fields = fields, rows = { main, a, b } }]])
    local out, err, code = h.quarry("report sb_par --format json --no-cache", env_with())
    assert.are.equal(0, code, err)
    local rows = cjson.decode(out).rows
    assert.are.equal(rows[1].snap, rows[2].snap) -- the very data the main transaction sees
    assert.are.equal(rows[1].snap, rows[3].snap)
    -- the main transaction is open meanwhile: its server connection is its own
    assert.are_not.equal(rows[1].pid, rows[2].pid)
    assert.are_not.equal(rows[1].pid, rows[3].pid)
    if not h.behind_pooler then
      -- (a transaction pooler may run two short transactions on one server
      -- connection when it has not opened another yet: their pids can match)
      assert.are_not.equal(rows[2].pid, rows[3].pid)
    end
    for _, r in ipairs(rows) do assert.are.same({ "quarry_reader", "on" }, { r.who, r.ro }) end
    -- one connection in all: the same answers, one after another
    local env = env_with({ DB_POOL_MAX = "1" })
    out, err, code = h.quarry("report sb_par --format json --no-cache", env)
    assert.are.equal(0, code, err)
    assert.are.equal(3, #cjson.decode(out).rows)
    -- and the sandbox holds in them: no writes, no escape from the limits
    plugin("sb_par_write", "ctx.parallel(function(c) return c.query('DELETE FROM curtailment_records') end)")
    local _
    _, err, code = run("sb_par_write")
    assert.are.equal(1, code)
    assert.matches("only reading statements", err)
    plugin("sb_par_loop", "ctx.parallel(function() while true do end end)")
    _, err, code = run("sb_par_loop")
    assert.are.equal(1, code)
    assert.matches("report sb_par_loop stopped: it ran more than", err)
    plugin("sb_par_mem", "ctx.parallel(function() local t = {} for i = 1, 1e9 do t[i] = { i } end end)")
    _, err, code = h.quarry("report sb_par_mem --no-cache", env_with({ QUARRY_PLUGIN_MEMORY = "64" }))
    assert.are.equal(1, code)
    assert.matches("stopped: it used more than 64 MiB of memory", err)
    assert.are.equal(65, tonumber(db:query_one("SELECT sum(-volume) AS v FROM curtailment_records "
      .. "WHERE settlement_date BETWEEN '2031-05-01' AND '2031-05-31'").v)) -- nothing was deleted
  end)

  it("stops a runaway loop with a clear error", function()
    plugin("sb_loop", "while true do end")
    local _, err, code = run("sb_loop")
    assert.are.equal(1, code)
    assert.matches("report sb_loop stopped: it ran more than", err)
  end)

  it("runs read-only", function()
    plugin("sb_write", "return ctx.query('DELETE FROM curtailment_records RETURNING 1 AS x')")
    local _, err, code = run("sb_write")
    assert.are.equal(1, code)
    assert.matches("only reading statements", err)
    plugin("sb_cte", "return ctx.query('WITH d AS (DELETE FROM curtailment_records RETURNING 1 AS x) SELECT * FROM d')")
    _, err, code = run("sb_cte")
    assert.are.equal(1, code)
    assert.matches("read%-only transaction", err)
  end)

  -- Each of these was seen to drop a table, run a program or read a server
  -- file from a plugin; each must fail and change nothing.
  local ATTACKS = {
    { "ROLLBACK; DROP TABLE sb_victim", "one statement per query" },
    { "COMMIT", "only reading statements" },
    { "END", "only reading statements" },
    { "/* x */ (DROP TABLE sb_victim)", "only reading statements" },
    { "SELECT 1; DROP TABLE sb_victim", "one statement per query" },
    { "SELECT 1 AS x; COPY (SELECT 1) TO PROGRAM 'touch /tmp/quarry-pwned'", "one statement per query" },
    { "RESET ROLE", "only reading statements" },
    { "SET ROLE quarry", "only reading statements" },
    { "SET SESSION AUTHORIZATION DEFAULT", "only reading statements" },
    { "SELECT set_config('role', 'none', false) AS x", "permission denied for function set_config" },
    { "SELECT query_to_xml('SELECT set_config(''role'', ''none'', false)', true, true, '') AS x",
      "permission denied for function set_config" },
    { "SELECT pg_read_file('/etc/passwd') AS x", "permission denied" },
    { "SELECT pg_ls_dir('.') AS x", "permission denied" },
    { "SELECT lo_import('/etc/passwd') AS x", "permission denied" },
    { "SELECT nextval('curtailment_records_id_seq') AS x", "permission denied" },
    -- a lock quarry's writers take, held by the plugin's pooled connection
    { "SELECT pg_advisory_lock(hashtext('quarry.cache_invalidations')) AS x", "permission denied for function" },
    { "SELECT pg_advisory_xact_lock(hashtext('quarry.date'), 8800) AS x", "permission denied for function" },
    { "SELECT query_to_xml('SELECT pg_try_advisory_lock_shared(1)', true, true, '') AS x",
      "permission denied for function" },
  }
  for i, a in ipairs(ATTACKS) do
    it("refuses " .. a[1], function()
      db:exec("CREATE TABLE IF NOT EXISTS sb_victim (x int)")
      local name = "sb_attack" .. i
      plugin(name, ("ctx.query(%q) return { fields = {}, rows = {} }"):format(a[1]))
      local _, err, code = run(name)
      assert.are.equal(1, code, err)
      assert.matches(a[2], err)
      assert.is_not_nil(db:query_one("SELECT to_regclass('sb_victim') AS t").t, "the table is gone")
      assert.is_nil(io.open("/tmp/quarry-pwned"))
    end)
  end

  it("runs as a role that cannot write, read server files or run programs", function()
    plugin("sb_role", [[return ctx.query("SELECT current_user AS who, " ..
      "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super, " ..
      "has_table_privilege('curtailment_records', 'INSERT') AS can_insert, " ..
      "pg_has_role('pg_execute_server_program', 'MEMBER') AS programs, " ..
      "pg_has_role('pg_read_server_files', 'MEMBER') AS files")]])
    local env = env_with()
    local out, err, code = h.quarry("report sb_role --format json --no-cache", env)
    assert.are.equal(0, code, err)
    local row = cjson.decode(out).rows[1]
    assert.are.same({ who = "quarry_reader", super = false, can_insert = false, programs = false, files = false },
      row)
  end)

  it("keeps the embedded default's everyday role from being a superuser", function()
    assert.is_false(db:query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").rolsuper)
  end)

  it("stops a loop that catches the limit's error with pcall", function()
    plugin("sb_pcall", "while true do pcall(function() while true do end end) end")
    local _, err, code = run("sb_pcall")
    assert.are.equal(1, code)
    assert.matches("report sb_pcall stopped: it ran more than", err)
  end)

  it("stops a plugin that runs past its time, in Lua or in a query", function()
    plugin("sb_slow", "ctx.query('SELECT pg_sleep(30)') return { fields = {}, rows = {} }")
    local env = env_with({ QUARRY_PLUGIN_TIMEOUT = "1" })
    local _, err, code, secs = h.quarry("report sb_slow --no-cache", env)
    assert.are.equal(1, code)
    assert.matches("statement timeout", err)
    assert.is_true(secs < 20)
  end)

  it("ends a plugin that takes too much memory with a one-line error", function()
    plugin("sb_rep", "local s = string.rep('x', 1 << 30) return { fields = {}, rows = { #s } }")
    plugin("sb_grow", "local t = {} while true do pcall(function() for i = 1, 1e9 do t[#t + 1] = { i } end end) end")
    for _, name in ipairs({ "sb_rep", "sb_grow" }) do
      local env = env_with({ QUARRY_PLUGIN_MEMORY = "64" })
      local _, err, code = h.quarry("report " .. name .. " --no-cache", env)
      assert.are.equal(1, code, name)
      assert.matches("^quarry: report " .. name .. " stopped: it used more than 64 MiB of memory", err)
    end
  end)

  -- Before: libpq gathered a result whole before quarry saw its size, so a
  -- plugin's SELECT of 600 MB held 600 MB (a few at once in quarry serve:
  -- the worker killed for memory) and only then tripped the limit.
  it("ends a plugin whose query returns more than it may hold, without ever holding it", function()
    plugin("sb_big", [[ctx.query("SELECT repeat('x', 1000000) AS x FROM generate_series(1, 600)")
      return { fields = {}, rows = {} }]])
    local prefix = ""
    for k, v in pairs(env_with({ QUARRY_PLUGIN_MEMORY = "64" })) do prefix = prefix .. k .. "=" .. h.shell_quote(v) .. " " end
    -- the peak resident size of the process, as the kernel counted it
    local p = io.popen(prefix .. [[python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stdout.write(r.stderr.decode())' ]] .. h.shell_quote(h.bin) .. " report sb_big --no-cache")
    local out = p:read("a")
    p:close()
    local code, kb, err = out:match("^(%d+) (%d+)\n(.*)$")
    assert.are.equal("1", code, out)
    assert.matches("^quarry: a query's result grew past 64 MiB, the most a plugin may hold", err)
    assert.is_true(tonumber(kb) < 300 * 1024, ("peak %d MiB for a 64 MiB limit"):format(tonumber(kb) // 1024))
    -- under the limit, rows come as before, every one
    plugin("sb_many", [[local r = ctx.query("SELECT g, repeat('y', g % 7) AS s, NULLIF(g % 3, 0) AS n " ..
      "FROM generate_series(1, 5000) g")
      local nulls = 0
      for _, x in ipairs(r) do if x.n == nil then nulls = nulls + 1 end end
      return { fields = { { name = "rows" }, { name = "last" }, { name = "nulls" } },
               rows = { { rows = #r, last = r[#r].s .. r[#r].g, nulls = nulls } } }]])
    local o, e, c = h.quarry("report sb_many --no-cache --format json", env_with({ QUARRY_PLUGIN_MEMORY = "64" }))
    assert.are.equal(0, c, e)
    local row = cjson.decode(o).rows[1]
    assert.are.same({ 5000, "yy5000", 1666 }, { math.tointeger(row.rows), row.last, math.tointeger(row.nulls) })
  end)

  it("limits a plugin file while it loads, for plugins and report alike", function()
    local ldir = h.tmpname(".loadloop")
    os.execute("mkdir -p " .. ldir)
    h.write(ldir .. "/sb_spin.lua", "while true do end")
    for _, cmd in ipairs({ "plugins", "report sb_spin" }) do
      local _, err, code = h.quarry(cmd, { QUARRY_PLUGIN_PATH = ldir })
      assert.are_not.equal(0, code, cmd)
      assert.matches("sb_spin.lua stopped: it ran more than", err)
    end
    os.execute("rm -rf " .. ldir)
  end)

  -- Code a plugin leaves behind must not run later, outside its limits.
  local LEFT_BEHIND = {
    { "sb_gc", "setmetatable({}, { __gc = function() while true do end end }) return { fields = {}, rows = {} }",
      "cannot set __gc" },
    { "sb_tostring", "error(setmetatable({}, { __tostring = function() while true do end end }))",
      "raised a table, not an error message" },
    { "sb_rowmeta", "return { fields = { { name = 'x', type = 'text' } }, rows = { setmetatable({}, "
      .. "{ __index = function() while true do end end }) } }", nil },
    { "sb_errmt", "local ok, e = pcall(ctx.query, 'SELEC 1') local mt = getmetatable(e) "
      .. "if mt then mt.__tostring = function() while true do end end end error(e)", "only reading statements" },
  }
  for _, c in ipairs(LEFT_BEHIND) do
    it("leaves nothing of " .. c[1] .. " to run in the host", function()
      plugin(c[1], c[2])
      local env = env_with({ QUARRY_PLUGIN_TIMEOUT = "5" })
      local _, err, code, secs = h.quarry("report " .. c[1] .. " --no-cache", env)
      assert.is_true(secs < 10, "hung")
      if c[3] then
        assert.are.equal(1, code, err)
        assert.matches(c[3], err)
      else
        assert.are.equal(0, code, err)
      end
    end)
  end

  it("hides the host's metatables and loads a plugin table with metamethods as plain data", function()
    h.write(dir .. "/sb_deftrap.lua", [[return setmetatable({ name = "sb_deftrap", description = "x",
      run = function() return { fields = {}, rows = {} } end }, { __index = function() while true do end end })]])
    local env = env_with({ QUARRY_PLUGIN_TIMEOUT = "5" })
    local _, err, code, secs = h.quarry("report sb_deftrap --no-cache", env)
    assert.is_true(secs < 10, "hung")
    assert.are.equal(0, code, err)
    plugin("sb_peek", "return { fields = { { name = 'x', type = 'text' } }, rows = { { x = tostring(getmetatable('')) "
      .. ".. tostring(getmetatable(select(2, pcall(ctx.query, 'SELEC 1')))) } } }")
    local out
    out, err, code = h.quarry("report sb_peek --no-cache --format csv", env)
    assert.are.equal(0, code, err)
    assert.matches("nilnil", out)
  end)

  it("runs as quarry_reader even when DATABASE_URL is a superuser's", function()
    local url = h.database_url():gsub("//quarry@", "//postgres@")
    plugin("sb_super", [[return ctx.query("SELECT current_user AS who")]])
    local env = env_with({ DATABASE_URL = url })
    local out, err, code = h.quarry("report sb_super --format csv --no-cache", env)
    assert.are.equal(0, code, err)
    assert.matches("quarry_reader", out)
    plugin("sb_super2", [[ctx.query("SELECT set_config('role', 'postgres', false) AS x") return {}]])
    local _
    _, err, code = h.quarry("report sb_super2 --no-cache", env)
    assert.are.equal(1, code)
    assert.matches("permission denied for function set_config", err)
    plugin("sb_super3", [[ctx.query("RESET ROLE") return {}]])
    _, err, code = h.quarry("report sb_super3 --no-cache", env)
    assert.are.equal(1, code)
    assert.matches("only reading statements", err)
  end)

  -- Before: a plugin served once by `quarry serve` held the lock every
  -- quarry writer takes to number the invalidation log, on a connection
  -- the pool kept, and every ingest after it waited for ever.
  it_session("gives back a session's advisory locks where the database still lets any role take them", function()
    local su = h.db({ conninfo = h.database_url():gsub("//quarry@", "//postgres@") })
    local LOCK = "pg_catalog.pg_advisory_lock(bigint)"
    su:exec(("GRANT EXECUTE ON FUNCTION %s TO PUBLIC"):format(LOCK)) -- as a non-superuser's migrate leaves it
    local runner = require "quarry.report"
    local own = h.db({ max_size = 1 }) -- its connection stays pooled, as a server's do
    local ok, err = pcall(function()
      plugin("sb_lock", [[local r = ctx.query("SELECT pg_advisory_lock(hashtext('quarry.cache_invalidations')) AS x")
        return { fields = {}, rows = {} }]])
      for _ = 1, 2 do -- the first run also learns that the reader may lock; the second knows
        runner.run(own, nil, runner.load_file(dir .. "/sb_lock.lua"), {}, { no_cache = true })
        local held = own:query_one([[SELECT count(*) AS n FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid()]]).n
        assert.are.equal(0, tonumber(held), "the plugin's connection still holds its lock")
      end
      -- what a writer does next: takes the lock, at once
      assert.is_true(db:query_one("SELECT pg_try_advisory_lock(hashtext('quarry.cache_invalidations')) AS ok").ok)
      db:query_one("SELECT pg_advisory_unlock(hashtext('quarry.cache_invalidations'))")
    end)
    own:close()
    su:exec(("REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC"):format(LOCK))
    su:close()
    assert(ok, err)
  end)

  it("cannot change the string library the host and other plugins see", function()
    plugin("sb_meta", "local mt = getmetatable('') if mt then mt.__index.rep = function() return 'pwned' end end "
      .. "string.rep = function() return 'pwned' end return { fields = {}, rows = {} }")
    local _, err, code = run("sb_meta")
    assert.are.equal(0, code, err)
    -- in this process: a plugin loaded and run by the runner itself
    local runner = require "quarry.report"
    runner.run(db, nil, runner.load_file(dir .. "/sb_meta.lua"), {}, { no_cache = true })
    assert.are.equal("aa", ("a"):rep(2))
    assert.are.equal("aa", string.rep("a", 2))
  end)

  it("keeps one declaration while a file is unchanged (what quarry serve answers hits from), "
    .. "and computes each time with a fresh load", function()
    local runner = require "quarry.report"
    local path = dir .. "/sb_state.lua"
    h.write(path, [[local n = 0
      return { name = "sb_state", description = "x", params = { k = { type = "integer", default = 1 } },
        run = function() n = n + 1 return { fields = { { name = "n", type = "integer" } }, rows = { { n = n } } } end }]])
    local a = runner.declaration(path)
    assert.are.equal(a, runner.declaration(path))
    for _ = 1, 2 do -- a declaration's own run never runs: each computation starts from n = 0
      local r = runner.run(db, nil, a, runner.params(a, {}), { no_cache = true })
      assert.are.equal(1, r.result.rows[1].n)
    end
    assert.are_not.equal(a, runner.load_file(path)) -- a load is always an instance of its own
    h.write(path, (h.read(path):gsub("default = 1", "default = 2")))
    local b = runner.declaration(path)
    assert.are_not.equal(a, b)
    assert.are.equal(2, runner.params(b, {}).k)
    -- a top level that asks the clock may declare something else next time: never kept
    h.write(dir .. "/sb_clock.lua", [[return { name = "sb_clock", description = tostring(os.time()),
      run = function() return {} end }]])
    assert.are_not.equal(runner.declaration(dir .. "/sb_clock.lua"), runner.declaration(dir .. "/sb_clock.lua"))
  end)

  it("names the file and key of a bad definition, as bad input (exit 2)", function()
    h.write(dir .. "/sb_bad.lua", [[return { name = "sb_bad", description = "x", run = function() end,
      params = { when = { type = "weekday" } } }]])
    local _, err, code = run("sb_bad")
    assert.are.equal(2, code)
    assert.matches("sb_bad.lua: 'params.when' needs a type", err)
    os.remove(dir .. "/sb_bad.lua")
  end)
end)
