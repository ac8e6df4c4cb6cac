--- Shared by the specs: the test services, fresh pools, and running the
-- quarry executable as a user would.
local core = require "quarry.core"
local dbmod = require "quarry.db"

local M = {}

M.root = os.getenv("QUARRY_ROOT") or "."
M.bin = os.getenv("QUARRY_BIN") or (M.root .. "/build/quarry")
M.home = os.getenv("QUARRY_HOME") or error("QUARRY_HOME is not set: run the specs through ctest")

function M.urls()
  return assert(require("quarry.services").urls({ home = M.home }), "the test services are not up")
end

-- DATABASE_URL is set only where the specs run through PgBouncer
-- (tests/CMakeLists.txt); otherwise the test PostgreSQL itself.
function M.database_url() return os.getenv("DATABASE_URL") or M.urls().DATABASE_URL end

--- Running through PgBouncer in transaction mode (DB_PREPARE=off).
M.behind_pooler = os.getenv("DB_PREPARE") == "off"
-- A spec's tests of what a pooler takes over by design (server sessions,
-- their identity and lifetime, named prepared statements) are declared with
--   local it_session = h.behind_pooler and pending or it
-- so behind one they are listed as pending, not run.

--- A pool of its own on the test database; opts override pool options.
function M.pool(opts, timings)
  local o = { conninfo = M.database_url(), max_size = 5, connect_timeout_ms = 5000,
              no_prepare = os.getenv("DB_PREPARE") == "off" }
  for k, v in pairs(opts or {}) do o[k] = v end
  return core.pool_new(o, timings or core.timings_new())
end

function M.db(opts) return dbmod.new(M.pool(opts)) end

--- A database of its own (dropped and created afresh) on the test server,
-- for specs that rename or restructure tables. Returns its URL and a Db.
function M.scratch_database(name)
  assert(name:match("^[%l_]+$"))
  local admin = M.db()
  admin:exec(("DROP DATABASE IF EXISTS %s WITH (FORCE)"):format(name))
  admin:exec(("CREATE DATABASE %s"):format(name))
  admin:close()
  local url = M.database_url():gsub("^(postgresql://[^/]*/)[^?]*", "%1" .. name)
  return url, dbmod.new(core.pool_new({ conninfo = url, max_size = 5, connect_timeout_ms = 5000 },
    core.timings_new()))
end

--- scratch_database(name) seeded with `quarry db seed --from from --to to`.
function M.seeded_database(name, from, to)
  local url, db = M.scratch_database(name)
  local _, err, code = M.quarry(("db seed --from %s --to %s"):format(from, to), { DATABASE_URL = url })
  assert(code == 0, err)
  return url, db
end

function M.drop_database(name)
  local admin = M.db()
  -- FORCE cannot end an autovacuum worker (the bootstrap superuser's) that
  -- happens to be on the database: try again once it has moved on
  for attempt = 1, 50 do
    local ok, err = pcall(admin.exec, admin, ("DROP DATABASE IF EXISTS %s WITH (FORCE)"):format(name))
    if ok then break end
    if type(err) ~= "table" or err.sqlstate ~= "42501" or attempt == 50 then admin:close() error(err, 0) end
    core.sleep(0.1)
  end
  admin:close()
end

function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.tmpname(suffix)
  local name = os.tmpname()
  os.remove(name)
  return name .. (suffix or "")
end

function M.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

function M.read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

M.CURTAILMENT_HEADER = "settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,"
  .. "original_price,final_price,so_flag,cadl_flag"

--- A curtailment CSV file of rows (strings), under the header quarry
-- ingests; returns its path.
function M.curtailment_csv(rows)
  return M.write(M.tmpname(".csv"), M.CURTAILMENT_HEADER .. "\n" .. table.concat(rows, "\n") .. "\n")
end

-- The curtailment of 2031-05 the report specs know the figures of: two farms,
-- two days, a farm with two acceptances in one period.
M.MAY_2031 = {
  "2031-05-01,40,T_SGRWO-1,Seagreen Wind Energy Limited,-10,-50,-5,-5,true,false",
  "2031-05-01,40,T_SGRWO-1,Seagreen Wind Energy Limited,-5,-25,-5,-5,true,false",
  "2031-05-01,41,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false",
  "2031-05-02,1,T_DOREW-1,Dorenell Windfarm Limited,-30,-2400,-80,-80,true,false",
}

--- Ingest curtailment rows (strings) through `quarry ingest curtailment`;
-- dates: its --dates (FROM..TO the rows hold whole), if any.
function M.ingest_rows(rows, env, dates)
  local path = M.curtailment_csv(rows)
  local _, err, code = M.quarry("ingest curtailment " .. (dates and ("--dates " .. dates .. " ") or "") .. path, env)
  os.remove(path)
  assert(code == 0, err)
end

--- Migrate db and load M.MAY_2031 afresh as the whole of May 2031 (difficulty
-- 100e12), for env's cache.
function M.load_may_2031(db, env)
  require("quarry.migrate").up(db)
  db:exec("DELETE FROM curtailment_records WHERE settlement_date BETWEEN '2031-05-01' AND '2031-05-31'")
  db:exec("INSERT INTO bitcoin_difficulty VALUES ('2031-05-01', 100e12) ON CONFLICT (effective_date) "
    .. "DO UPDATE SET difficulty = 100e12")
  M.ingest_rows(M.MAY_2031, env, "2031-05-01..2031-05-31") -- the whole month: its other days had no curtailment
  M.quarry("cache clear", env)
end

--- report(args) and json_report(args) for a spec's environment: the
-- command's output, error and exit code; the decoded json (no cache).
function M.reporter(env)
  local function report(args) return M.quarry("report " .. args, env) end
  local function json_report(args)
    local out, err, code = report(args .. " --format json --no-cache")
    assert(code == 0, err)
    return require("cjson").decode(out)
  end
  return report, json_report
end

--- Run `quarry ARGS` (a shell fragment); env is a table of extra variables.
-- Returns stdout, stderr, exit code, seconds taken.
function M.quarry(args, env)
  local err = M.tmpname(".err")
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. M.shell_quote(v) .. " " end
  local t0 = core.now_ns()
  local stdin = args:find("<", 1, true) and "" or " </dev/null"
  local p = io.popen(("%s%s %s 2>%s%s; echo \"__rc=$?\""):format(prefix, M.shell_quote(M.bin), args, err, stdin))
  local out = p:read("a")
  p:close()
  local secs = (core.now_ns() - t0) / 1e9
  local code = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  local stderr = M.read(err) or ""
  os.remove(err)
  return out, stderr, code, secs
end

--- scripts/services.sh VERB on the test services.
function M.services(verb)
  local ok = os.execute(("QUARRY_HOME=%s %s/scripts/services.sh %s"):format(
    M.shell_quote(M.home), M.shell_quote(M.root), verb))
  assert(ok, "services.sh " .. verb .. " failed")
end

--- Run SQL statements on db as a write the triggers noting writes made
-- outside quarry cannot see (lua/quarry/outside.lua: into a partition by
-- name, or made before those triggers existed): what the integrity report
-- and `rollup verify` are there to catch.
function M.unseen_write(db, ...)
  local stmts = { ... }
  assert(db:transaction(function(tx)
    tx:exec("SELECT set_config('quarry.writer', 'on', true)")
    for _, sql in ipairs(stmts) do tx:exec(sql) end
  end))
end

--- kill -9 a command mid-write: while holder (a Db) holds what hold(tx)
-- takes, start cmd (a shell fragment) in the background, wait until one
-- session of db's database waits (wait: a pg_stat_activity condition), and
-- kill the command there.
function M.kill_while_waiting(db, holder, hold, cmd, wait)
  local pidfile = M.tmpname(".pid")
  assert(holder:transaction(function(tx)
    hold(tx)
    os.execute(("%s >/dev/null 2>&1 & echo $! > %s"):format(cmd, pidfile))
    local waiting = M.eventually(function()
      return db:query_one(("SELECT count(*)::int AS n FROM pg_stat_activity WHERE %s "
        .. "AND datname = current_database()"):format(wait)).n
    end, 1, 10)
    assert(waiting == 1, "the command never waited where it was to be killed")
    os.execute("kill -9 " .. M.read(pidfile):match("%d+"))
  end))
  os.remove(pidfile)
end

function M.sleep(seconds) os.execute("sleep " .. seconds) end

--- fn()'s value once it equals want, polling for at most `within` seconds;
-- else its last value (for what a server does a moment later: a cancel).
function M.eventually(fn, want, within)
  local deadline = core.now_ns() + within * 1e9
  local v = fn()
  while v ~= want and core.now_ns() < deadline do
    core.sleep(0.02)
    v = fn()
  end
  return v
end

--- A local stand-in for a public API (tests/tools/api_server.py) serving
-- root's files, with faults injected per path; base: the URL path its
-- files sit under. Returns {url=, stop(), log()}.
function M.api_server(root, faults, base)
  local cjson = require "cjson"
  local dir = M.tmpname(".api")
  os.execute("mkdir -p " .. dir)
  M.write(dir .. "/faults.json", cjson.encode(faults or {}))
  os.execute(("python3 %s/tests/tools/api_server.py %s %s/faults.json %s/log %s/port >%s/out 2>&1 & echo $! >%s/pid")
    :format(M.shell_quote(M.root), M.shell_quote(root), dir, dir, dir, dir, dir))
  for _ = 1, 100 do
    if M.read(dir .. "/port") then break end
    core.sleep(0.05)
  end
  local port = assert(M.read(dir .. "/port"), "the fixture server did not start: " .. (M.read(dir .. "/out") or ""))
  return { dir = dir, url = "http://127.0.0.1:" .. port .. (base or ""),
    stop = function() os.execute("kill " .. M.read(dir .. "/pid") .. " 2>/dev/null; rm -rf " .. dir) end,
    log = function()
      local out = {}
      for line in (M.read(dir .. "/log") or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
      return out
    end }
end

return M
