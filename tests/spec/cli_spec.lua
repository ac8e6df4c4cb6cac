-- lua/quarry/cli.lua and src/main.c: what a user sees at the shell.
local h = require "spec.helper"

local function script(text) return h.write(h.tmpname(".lua"), text) end

describe("quarry command line", function()
  setup(function() require("quarry.migrate").up(h.db()) end)

  it("prints help for itself and every command", function()
    for _, args in ipairs({ "--help", "run --help", "db --help", "db migrate --help", "db status --help",
                            "services --help", "services up --help", "services status --help" }) do
      local out, err, code = h.quarry(args)
      assert.are.equal(0, code, args .. ": " .. err)
      assert.matches("Usage: quarry", out, 1, true)
    end
  end)

  it("prints its version", function()
    local out, _, code = h.quarry("--version")
    assert.are.equal(0, code)
    assert.matches("^quarry %d+%.%d+%.%d+", out)
  end)

  it("exits 2 with one line on a usage error", function()
    for _, args in ipairs({ "frobnicate", "", "db", "--log-level loud run x.lua", "run /no/such/script.lua" }) do
      local _, err, code = h.quarry(args)
      assert.are.equal(2, code, args)
      assert.matches("quarry", err)
    end
  end)

  it("points a usage error at the help of the command that was mistyped", function()
    for args, help in pairs({ ["--bogus"] = "quarry --help", ["miners add S21 --hashrate 1"] = "quarry miners add --help",
                              ["--log-level warn ingest curtailment --nope x"] = "quarry ingest curtailment --help",
                              ["report monthly --mont 2024-03"] = "quarry report monthly --help" }) do
      local _, err, code = h.quarry(args)
      assert.are.equal(2, code, args)
      assert.matches("Try '" .. help:gsub("%-", "%%-") .. "'", err, 1, false, args)
    end
  end)

  it("calls bad input bad input (exit 2) in every command, never a raw server error", function()
    local cases = {
      { "db status", { DATABASE_URL = "mysql://u@h/db" }, "must be a postgresql:// URL" },
      { "report daily --date 0000-01-01", nil, "is not a date" },
      { "report monthly --month 0000-01", nil, "is not a month" },
      { "report yearly --year 0000", nil, "is not a year" },
      { "rollup refresh --date 0000-01-01", nil, "is not a date" },
      { "cache invalidate --date 9999-12-31", nil, "is not a date" },
      { "report farms --year 2024 --limit 0", nil, "out of range" },
      { "report farms --year 2024 --limit=-5", nil, "out of range" },
      { "report daily --date '\255\254'", nil, "not valid UTF%-8" },
      { "report farms --year 2024 --lead-party \"$(printf 'a\\377b')\"", nil, "not valid UTF%-8" },
      -- a folder or a missing file where a file goes: named once, with the reason
      { "ingest price /tmp", nil, "^quarry: cannot read /tmp: Is a directory\n$" },
      { "fetch bmus", { ELEXON_API_URL = "http://" }, "ELEXON_API_URL must be an http:// or https:// URL with a host" },
      { "fetch price --from 2024-01-01 --to 2024-01-02", { QUARRY_PRICE_URL = "ftp://prices" }, "QUARRY_PRICE_URL must" },
      { "ingest bmus /tmp", nil, "^quarry: cannot read /tmp: Is a directory\n$" },
      { "ingest curtailment /tmp", nil, "^quarry: cannot read /tmp: Is a directory\n$" },
      { "ingest price /no/such.csv", nil, "^quarry: cannot open /no/such.csv: No such file or directory\n$" },
    }
    for _, c in ipairs(cases) do
      local _, err, code = h.quarry(c[1], c[2])
      assert.are.equal(2, code, c[1] .. ": " .. err)
      assert.matches(c[3], err, 1, false)
      assert.not_matches("SQLSTATE", err)
    end
  end)

  it("checks every setting before any work, even for a script that never queries", function()
    local path = script([[print("ran")]])
    for _, case in ipairs({ { "--pool-max 0 run " .. path, nil }, { "run " .. path, { DB_POOL_MAX = "0" } },
                            { "--idle-timeout soon run " .. path, nil } }) do
      local out, err, code = h.quarry(case[1], case[2])
      assert.are.equal(2, code, err)
      assert.are.equal("", out) -- the script did not run
      assert.matches("must be an integer", err)
    end
    os.remove(path)
  end)

  it("has the small habits: -V, quarry help CMD, JSON error lines, PGAPPNAME", function()
    local out, _, code = h.quarry("-V")
    assert.are.equal(0, code)
    assert.matches("^quarry %d", out)
    out, _, code = h.quarry("help miners")
    assert.are.equal(0, code)
    assert.matches("Usage: quarry miners", out)
    local err
    _, err, code = h.quarry("--log-format json report nosuch")
    assert.are.equal(2, code)
    local line = require("cjson").decode(err)
    assert.are.equal("error", line.level)
    assert.matches("unknown report 'nosuch'", line.msg)
    -- every stderr line of a command, news and script errors too
    local dir = h.tmpname(".json-out")
    _, err, code = h.quarry("--log-format json report monthly --month 2031-05 -o " .. dir .. ".csv")
    assert.are.equal(0, code, err)
    assert.matches("wrote", require("cjson").decode(err:match("^[^\n]*")).msg)
    for l in err:gmatch("[^\n]+") do assert.are.equal("table", type(require("cjson").decode(l))) end
    os.remove(dir .. ".csv")
    local bad = script([[error("boom")]])
    _, err, code = h.quarry("--log-format json run " .. bad)
    assert.are.equal(1, code)
    assert.matches("boom", require("cjson").decode(err).msg)
    os.remove(bad)
    local path = script([[print(require("quarry").db:query_one("SELECT current_setting('application_name') AS a").a)]])
    out = h.quarry("run " .. path)
    assert.are.equal("quarry\n", out)
    out = h.quarry("run " .. path, { PGAPPNAME = "nightly-report" })
    assert.are.equal("nightly-report\n", out)
    os.remove(path)
  end)

  it("opens psql on the database quarry uses, passing arguments after --", function()
    local out, err, code = h.quarry("db psql -- -tAc 'SELECT current_user, current_database()'")
    assert.are.equal(0, code, err)
    assert.are.equal("quarry|quarry\n", out)
    code = select(3, h.quarry("db psql -- -tAc 'SELECT no_such_column'"))
    assert.are_not.equal(0, code)
  end)

  it("refuses a malformed DB_POOL_MAX with exit 2", function()
    local _, err, code = h.quarry("db status", { DB_POOL_MAX = "lots" })
    assert.are.equal(2, code)
    assert.matches("DB_POOL_MAX must be an integer", err)
    -- a report's flags are known before the settings are checked: the
    -- setting is what is named, not "unknown option '--month'"
    _, err, code = h.quarry("report monthly --month 2031-05", { DB_POOL_MAX = "lots", QUARRY_PLUGIN_TIMEOUT = "soon" })
    assert.are.equal(2, code)
    assert.matches("DB_POOL_MAX must be an integer", err)
    assert.is_nil(err:find("unknown option", 1, true))
    local out
    out, err, code = h.quarry("--pool-max 3 report monthly --month 2031-05 --format csv", { DB_POOL_MAX = "lots" })
    assert.are.equal(0, code, err)
    assert.matches("^settlement_date,", out)
  end)

  it("names a mistyped report as what is wrong, whatever flags follow it", function()
    for _, args in ipairs({ "report dialy --date 2031-05-01", "report dialy --help", "help report dialy",
                            "report dialy" }) do
      local out, err, code = h.quarry(args)
      assert.are.equal(2, code, args)
      assert.are.equal("", out, args)
      assert.matches("^quarry: unknown report 'dialy' %(reports: [^\n]*daily", err, 1, false, args)
      assert.is_nil(err:find("unknown option", 1, true), args)
    end
    -- and the help of a report, as a user would ask for it
    local out, _, code = h.quarry("help report daily")
    assert.are.equal(0, code)
    assert.matches("%-%-date", out)
    assert.matches("%-%-lead%-party", out)
    out, _, code = h.quarry("help db seed")
    assert.are.equal(0, code)
    assert.matches("Usage: quarry db seed", out)
  end)

  it("takes pool settings as flags, over the environment", function()
    local _, err, code = h.quarry("--pool-max 0 db status", { DB_POOL_MAX = "5" })
    assert.are.equal(2, code)
    assert.matches("%-%-pool%-max must be an integer >= 1, got '0'", err)
    local path = script("print(require('quarry').db:stats().max)\n")
    local out
    out, err, code = h.quarry("--pool-max 3 run " .. path, { DB_POOL_MAX = "7" })
    assert.are.equal(0, code, err)
    assert.are.equal("3\n", out)
    out = h.quarry("run " .. path, { DB_POOL_MAX = "7" })
    assert.are.equal("7\n", out)
    os.remove(path)
  end)

  it("runs a script with its arguments and exits 0", function()
    local path = script([[
local quarry = require "quarry"
print(arg[0] ~= nil, arg[1], arg[2], select("#", ...))
print(quarry.db:query_one("SELECT $1::int * 2 AS v", tonumber(arg[1])).v)
]])
    local out, err, code = h.quarry("run " .. path .. " 21 --flag")
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.are.equal("true\t21\t--flag\t2\n42\n", out)
  end)

  it("runs the shipped example, which checks its argument", function()
    local out, err, code = h.quarry("run examples/mining-yield.lua 99864.95")
    assert.are.equal(0, code, err)
    assert.matches("check: 99,864.95 MWh on 2025%-03%-28 %-> 75.39 BTC on an S19J_PRO", out)
    out, err, code = h.quarry("run examples/mining-yield.lua 2024-03-08")
    assert.are.equal(1, code, out)
    assert.matches("usage: quarry run examples/mining%-yield%.lua %[MWH%], MWH a number of MWh, got '2024%-03%-08'", err)
  end)

  it("reports a script error as file:line: message with exit 1", function()
    local path = script("local x = 1\nerror('analysis failed')\n")
    local _, err, code = h.quarry("run " .. path)
    assert.are.equal(1, code)
    assert.are.equal(path .. ":2: analysis failed\n", err)
    -- a database error names the script line too
    path = script("local quarry = require 'quarry'\n\nquarry.db:query('SELECT * FROM nowhere')\n")
    _, err, code = h.quarry("run " .. path)
    assert.are.equal(1, code)
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ":3: relation \"nowhere\" does not exist", err)
    assert.not_matches("traceback", err)
    -- debug adds the traceback
    _, err = h.quarry("--log-level debug run " .. path)
    os.remove(path)
    assert.matches("stack traceback", err)
  end)

  it("exits 3 quickly, naming host and port, when the database is unreachable", function()
    local path = script("require('quarry').db:query('SELECT 1')\n")
    local _, err, code, secs = h.quarry("run " .. path,
      { DATABASE_URL = "postgresql://analyst:s3cr3t-pw@127.0.0.1:1/quarry", DB_CONNECTION_TIMEOUT = "2000" })
    assert.are.equal(3, code)
    assert.matches("127.0.0.1:1", err)
    assert.not_matches("s3cr3t", err)
    assert.are.equal(1, select(2, err:gsub("\n", "")))
    assert.is_true(secs < 2, secs)
    os.remove(path)
  end)

  it("gives up on a server that never answers within DB_CONNECTION_TIMEOUT", function()
    -- A PostgreSQL socket name that leads to Redis: it accepts the connection
    -- and never answers libpq's startup packet.
    local dir = h.tmpname(".sock")
    os.execute("mkdir -p " .. dir)
    local redis = h.urls().REDIS_URL:match("^unix://(.*)$")
    os.execute(("ln -sf %s %s/.s.PGSQL.7777"):format(redis, dir))
    local path = script("require('quarry').db:query('SELECT 1')\n")
    local _, err, code, secs = h.quarry("--connection-timeout 700 run " .. path,
      { DATABASE_URL = "postgresql://u@/quarry?host=" .. dir .. "&port=7777", DB_CONNECTION_TIMEOUT = "60000" })
    os.execute("rm -rf " .. dir)
    os.remove(path)
    assert.are.equal(3, code, err)
    assert.matches("no answer", err)
    assert.is_true(secs >= 0.65 and secs < 2.0, secs)
  end)

  it("never shows a password from DATABASE_URL or REDIS_URL", function()
    local env = { DATABASE_URL = h.database_url():gsub("quarry@", "quarry:topsecret@"),
                  REDIS_URL = "redis://:alsosecret@127.0.0.1:1/0" }
    local out, _, code = h.quarry("--help", env)
    assert.are.equal(0, code)
    local err
    assert.matches("%*%*%*", out)
    out, err, code = h.quarry("--log-level debug db status", env)
    assert.are.equal(0, code, err)
    for _, text in ipairs({ out, err }) do
      assert.not_matches("topsecret", text)
      assert.not_matches("alsosecret", text)
    end
    assert.matches("quarry:%*%*%*@", out)
  end)

  it("prints the timings table with --timings", function()
    local path = script([[
local quarry = require "quarry"
quarry.timed("my_block", function() quarry.db:query("SELECT 1") end)
]])
    local _, err, code = h.quarry("--timings run " .. path)
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.matches("my_block%s+1", err)
    assert.matches("SELECT %?%s+1", err)
    assert.matches("pool.wait", err, 1, true)
    assert.matches("p95", err)
  end)

  it("applies and reports migrations", function()
    local out, err, code = h.quarry("db migrate")
    assert.are.equal(0, code, err)
    assert.matches("schema at version %d+", out)
    out, err, code = h.quarry("db status")
    assert.are.equal(0, code, err)
    assert.matches("embedded", out)
    assert.not_matches("PENDING", out)
  end)

  -- quarry with its files limited to kb KiB (writes beyond fail with EFBIG,
  -- as on a full disk; SIGXFSZ ignored so the write returns the error)
  local function limited(args, kb)
    local p = io.popen(("bash -c %s 2>&1; echo __rc=$?"):format(h.shell_quote(
      ("trap '' XFSZ; ulimit -f %d; exec %s %s"):format(kb, h.shell_quote(h.bin), args))))
    local out = p:read("a")
    p:close()
    return out:gsub("__rc=%d+%s*$", ""), tonumber(out:match("__rc=(%d+)%s*$"))
  end

  it("fails (exit 1) when standard output cannot take what it printed, not when its reader left", function()
    for _, args in ipairs({ "report monthly --month 2031-05", "report monthly --month 2031-05 --format json",
                            "plugins", "--help" }) do
      local _, err, code = h.quarry(args .. " >/dev/full")
      assert.are.equal(1, code, args)
      assert.matches("quarry: cannot write standard output", err, 1, true)
    end
    local path = script([[print(("x"):rep(100000)) os.exit(0)]]) -- a script's own exit is checked too
    local _, err, code = h.quarry("run " .. path .. " >/dev/full")
    assert.are.equal(1, code)
    assert.matches("cannot write standard output", err, 1, true)
    os.remove(path)
    -- `| head` took what it wanted: no error, no failure, whether or not the
    -- cache was connected (it was 141, killed by SIGPIPE, without), and
    -- however much was still to write when the reader left
    local function piped(args)
      local p = io.popen(("bash -c %s 2>&1; echo __rc=$?"):format(h.shell_quote(("set -o pipefail; %s %s "
        .. "| head -c 10 >/dev/null"):format(h.shell_quote(h.bin), args))))
      local out = p:read("a")
      p:close()
      -- this spec loads no May 2031 of its own: on a fresh database the report says so, which is no error
      return (out:gsub("quarry: no data loaded for [^\n]*\n", ""))
    end
    assert.are.equal("__rc=0\n", piped("report monthly --month 2031-05 --format json"))
    assert.are.equal("__rc=0\n", piped("report periods --month 2031-05 --format csv --no-cache"))
    local big = script([[for _ = 1, 20000 do print(("x"):rep(100)) end]])
    local cached = script([[local q = require "quarry"
q.cache:get("cli-spec:pipe") -- connects: the process has met Redis
for _ = 1, 20000 do io.write(("x"):rep(100), "\n") end]])
    assert.are.equal("__rc=0\n", piped("run " .. big))
    assert.are.equal("__rc=0\n", piped("run " .. cached))
    -- a program a script starts dies of SIGPIPE as it would anywhere (an
    -- ignored SIGPIPE would be inherited: `yes` would fail with a message)
    local child = script([[require("quarry").cache:get("cli-spec:pipe")
local p = io.popen("bash -c 'set -o pipefail; yes | head -c 1 >/dev/null; echo $?' 2>&1")
io.write(p:read("a"))
p:close()]])
    local child_out, child_err, child_code = h.quarry("run " .. child)
    assert.are.equal(0, child_code, child_err)
    assert.are.equal("141\n", child_out)
    for _, f in ipairs({ big, cached, child }) do os.remove(f) end
  end)

  it("leaves -o FILE as it was when the disk fills, and says so (exit 1)", function()
    local path = h.tmpname(".json")
    h.write(path, "the old report\n")
    local out, code = limited("report monthly --month 2031-05 --format json -o " .. path, 1)
    assert.are.equal(1, code, out)
    assert.matches("cannot write " .. path .. ": File too large", out, 1, true)
    assert.not_matches("wrote", out)
    assert.are.equal("the old report\n", h.read(path))
    local dir = path:match("^(.*)/")
    for name in io.popen("ls -a " .. h.shell_quote(dir)):lines() do
      assert.is_nil(name:find(path:match("[^/]+$") .. ".tmp", 1, true), "a temporary file was left: " .. name)
    end
    out, code = limited("report monthly --month 2031-05 --format json -o " .. path, 1024)
    assert.are.equal(0, code, out)
    assert.matches('"report":"monthly"', h.read(path), 1, true)
    os.remove(path)
  end)

  it("fails a script's os.exit inside a transaction, which rolls its writes back, instead of exiting 0", function()
    local path = script([[
local db = require("quarry").db
db:transaction(function(tx)
  tx:exec("CREATE TABLE cli_spec_exit (x int)")
  os.exit(0)
end)]])
    local _, err, code = h.quarry("run " .. path)
    assert.are.equal(1, code)
    assert.matches("os.exit inside a transaction: it was rolled back", err, 1, true)
    assert.is_false(h.db():query_one("SELECT to_regclass('cli_spec_exit') IS NOT NULL AS e").e)
    h.write(path, [[require("quarry").db:transaction(function(tx) tx:exec("SELECT 1") end) os.exit(3)]])
    _, err, code = h.quarry("run " .. path) -- after the transaction: the script's own code, no word
    assert.are.equal(3, code)
    assert.are.equal("", err)
    -- a transaction of a function quarry.parallel cancelled (another one failed) is over too
    h.write(path, [[
local quarry = require "quarry"
assert(not pcall(quarry.parallel,
  function() return quarry.db:transaction(function(tx) tx:query("SELECT pg_sleep(5)") end) end,
  function() require("quarry.core").sleep(0.2) error("the other one failed", 0) end))
os.exit(0)]])
    _, err, code = h.quarry("run " .. path)
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
    os.remove(path)
  end)

  it("quotes a bad value on one line, its control characters as escapes, not obeyed by the terminal", function()
    local value = "2031\27[2J\27]0;owned\7\nquarry: done, 0 problems"
    local out, err, code = h.quarry("report daily --date " .. h.shell_quote(value))
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("quarry: --date '2031\\x1b[2J\\x1b]0;owned\\x07\\x0aquarry: done, 0 problems' is not a date "
      .. "(YYYY-MM-DD, 2001-01-01..2100-12-31)\n", err)
  end)

  it("refuses a report param given twice (exit 2) rather than pick one", function()
    for _, args in ipairs({ "report daily --date 2031-05-01 --date 2031-05-02",
                            "report monthly --month 2031-05 --miner S9 --miner M20S",
                            "report monthly --month 2031-05 --format csv --format json" }) do
      local out, err, code = h.quarry(args)
      assert.are.equal(2, code, args)
      assert.are.equal("", out)
      assert.matches("must be used at most 1 time", err)
    end
  end)

  it("refuses -o FILE of a format it does not write (exit 2) unless --format says what to write", function()
    local path = h.tmpname(".xlsx")
    local _, err, code = h.quarry("report monthly --month 2031-05 -o " .. path)
    assert.are.equal(2, code)
    assert.matches("does not write .xlsx files", err, 1, true)
    assert.is_nil(h.read(path))
    _, err, code = h.quarry("report monthly --month 2031-05 --format csv -o " .. path)
    assert.are.equal(0, code, err)
    assert.matches("^settlement_date,", h.read(path))
    os.remove(path)
    -- a directory is bad input too, refused before any file is made beside it
    local dir = h.tmpname(".out")
    assert(os.execute("mkdir -p " .. h.shell_quote(dir .. "/d")))
    _, err, code = h.quarry("report monthly --month 2031-05 --format csv -o " .. dir .. "/d")
    assert.are.equal(2, code)
    assert.are.equal("quarry: cannot write " .. dir .. "/d: Is a directory\n", err)
    local p = io.popen("ls -A " .. h.shell_quote(dir))
    assert.are.equal("d\n", p:read("a"))
    p:close()
    os.execute("rm -rf " .. h.shell_quote(dir))
  end)

  it("stops a seed whose generated file cannot be written, committing nothing", function()
    local function stored()
      return h.db():query_one([[SELECT count(*)::int AS n FROM curtailment_records
        WHERE settlement_date BETWEEN '2037-01-01' AND '2037-03-31']]).n
    end
    local before = stored()
    local out, code = limited("db seed --from 2037-01-01 --to 2037-03-31", 64)
    assert.are.equal(1, code, out)
    assert.matches("cannot write the generated curtailment rows: File too large", out, 1, true)
    assert.are.equal(before, stored())
  end)

  it("reports the embedded services", function()
    local out, _, code = h.quarry("services status")
    assert.are.equal(0, code)
    assert.matches("postgresql: running", out)
    assert.matches("redis: running", out)
  end)
end)
