-- src/pool.c through Lua: the faults a pool must survive.
local h = require "spec.helper"
-- behind PgBouncer (tests/CMakeLists.txt): listed as pending, see spec/helper.lua
local it_session = h.behind_pooler and pending or it
local core = require "quarry.core"

local function backends(db)
  return db:query_one([[SELECT count(*) AS n FROM pg_stat_activity
    WHERE application_name = 'quarry' AND backend_type = 'client backend']]).n
end

describe("pool", function()
  it("opens connections lazily, up to the maximum", function()
    local db = h.db({ max_size = 3 })
    assert.are.equal(0, db:stats().total)
    local a, b, c = db:acquire(), db:acquire(), db:acquire()
    local s = db:stats()
    assert.are.equal(3, s.total)
    assert.are.equal(3, s.in_use)
    a:release(); b:release(); c:release()
    s = db:stats()
    assert.are.same({ 3, 0, 3 }, { s.idle, s.in_use, s.created })
    db:close()
  end)

  it("fails an acquire on an exhausted pool within the timeout, stating the pool", function()
    local db = h.db({ max_size = 2, connect_timeout_ms = 400 })
    local a, b = db:acquire(), db:acquire()
    local t0 = core.now_ns()
    local ok, err = pcall(db.acquire, db)
    local ms = (core.now_ns() - t0) / 1e6
    assert.is_false(ok)
    assert.are.equal("timeout", err.code)
    assert.is_true(ms >= 390 and ms < 400 + 100, ("took %.1f ms"):format(ms))
    assert.matches("pool size 2 of 2, 2 in use, 0 idle", err.message)
    assert.are.equal(1, db:stats().timeouts)
    a:release(); b:release()
    assert.are.equal(0, db:stats().in_use)
    assert.are.equal(1, db:query_one("SELECT 1 AS x").x) -- still usable
    db:close()
  end)

  it_session("replaces an idle connection whose backend was terminated", function()
    local db = h.db({ max_size = 2, validate_after_ms = 100 })
    local victim = db:query_one("SELECT pg_backend_pid() AS pid").pid
    local killer = h.db({ max_size = 1 })
    assert.is_true(killer:query_one("SELECT pg_terminate_backend($1) AS ok", victim).ok)
    h.sleep(0.2)
    local r = db:query_one("SELECT pg_backend_pid() AS pid")
    assert.are_not.equal(victim, r.pid)
    assert.are.equal(1, db:stats().closed_by.broken)
    killer:close()
    db:close()
  end)

  it_session("survives a PostgreSQL restart while its connections are idle", function()
    local db = h.db({ max_size = 3 })
    local conns = { db:acquire(), db:acquire(), db:acquire() }
    for _, c in ipairs(conns) do c:release() end
    assert.are.equal(3, db:stats().idle)
    h.services("stop-pg")
    h.services("start-pg")
    h.sleep(1.1) -- past validate_after_ms: idle connections are checked before use
    for i = 1, 5 do assert.are.equal(i, db:query_one("SELECT $1::int AS i", i).i) end
    assert.is_true(db:stats().closed_by.broken >= 1)
    db:close()
  end)

  it("never leaks through 10,000 transactions that throw", function()
    local max = 4
    local db = h.db({ max_size = max })
    local peak = 0
    for i = 1, 10000 do
      local ok = db:transaction(function(tx)
        tx:exec("SELECT 1")
        if i % 1000 == 0 then peak = math.max(peak, backends(db)) end -- a second connection
        error({ code = "script", message = "boom " .. i })
      end)
      assert(ok == false)
    end
    local s = db:stats()
    assert.are.equal(0, s.in_use)
    assert.is_true(s.total <= max)
    assert.is_true(peak <= max, "pg_stat_activity showed " .. peak)
    assert.is_true(peak >= 2)
    db:close()
  end)

  it("closes connections idle past the idle timeout", function()
    local db = h.db({ max_size = 3, idle_timeout_ms = 200 })
    local conns = { db:acquire(), db:acquire(), db:acquire() }
    for _, c in ipairs(conns) do c:release() end
    h.sleep(0.35)
    local s = db:stats()
    assert.are.equal(0, s.idle)
    assert.are.equal(0, s.total)
    assert.are.equal(3, s.closed_by.idle)
    db:close()
  end)

  it_session("replaces connections past their lifetime", function()
    local db = h.db({ max_size = 1, max_lifetime_ms = 200 })
    local first = db:query_one("SELECT pg_backend_pid() AS pid").pid
    h.sleep(0.3)
    local second = db:query_one("SELECT pg_backend_pid() AS pid").pid
    assert.are_not.equal(first, second)
    assert.is_true(db:stats().closed_by.lifetime >= 1)
    db:close()
  end)

  it("discards a connection released with a statement still in progress", function()
    local db = h.db({ max_size = 1 })
    local c = db:acquire()
    -- A COPY left open is what a caller that died mid-statement leaves: the
    -- server still waits on this session. It must be closed, never reused.
    local ok, err = pcall(c.exec, c, "COPY (SELECT 1) TO STDOUT")
    assert.is_false(ok)
    assert.are.equal("usage", err.code)
    c:release()
    local s = db:stats()
    assert.are.equal(1, s.closed_by.busy)
    assert.are.equal(0, s.total)
    assert.are.equal(1, db:query_one("SELECT 1 AS x").x)
    db:close()
  end)

  it("warns once, naming the script line, when a connection is held too long", function()
    local script = h.write(h.tmpname(".lua"), [[
local quarry = require "quarry"
local db = quarry.db
local held = db:acquire()
os.execute("sleep 0.4")
db:query("SELECT 1")
db:query("SELECT 2")
held:release()
]])
    local _, err, code = h.quarry("run " .. h.shell_quote(script), { DB_HOLD_WARN = "200" })
    os.remove(script)
    assert.are.equal(0, code, err)
    local _, n = err:gsub("connection held for", "")
    assert.are.equal(1, n, err)
    assert.matches(script:gsub("%p", "%%%0") .. ":3", err)
  end)

  it("does not warn of a hold declared long on purpose (quarry's bulk writers), and warns of the next", function()
    local script = h.write(h.tmpname(".lua"), [[
local quarry = require "quarry"
local db = quarry.db
local bulk = db:acquire()
bulk:expect_long_hold()
os.execute("sleep 0.4")
db:query("SELECT 1")
bulk:release()
local again = db:acquire()
os.execute("sleep 0.4")
db:query("SELECT 2")
again:release()
]])
    local _, err, code = h.quarry("run " .. h.shell_quote(script), { DB_HOLD_WARN = "200" })
    os.remove(script)
    assert.are.equal(0, code, err)
    local _, n = err:gsub("connection held for", "")
    assert.are.equal(1, n, err)
    assert.matches(script:gsub("%p", "%%%0") .. ":8", err)
  end)
end)
