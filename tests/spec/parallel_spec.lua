-- lua/quarry/parallel.lua: functions whose queries run at the same time on
-- their own connections. Overlap is proven by the server's own clock and
-- backend pids, not by timing the test.
local h = require "spec.helper"
local quarry = require "quarry"

local parallel = quarry.parallel

-- A statement that reports where and when the server ran it.
local SPAN = "SELECT pg_backend_pid() AS pid, clock_timestamp() AS s, pg_sleep($1), clock_timestamp() AS e, "
  .. "$2::int AS n"

local function epoch(db, ts) return tonumber(db:query_one("SELECT extract(epoch FROM $1::timestamptz) AS x", ts).x) end

describe("quarry.parallel", function()
  local db = h.db({ max_size = 6 })
  teardown(function() db:close() end)

  it("runs the functions' queries at the same time, on different connections, results in order", function()
    local fns = {}
    for i = 1, 4 do fns[i] = function() return db:query_one(SPAN, 0.3, i) end end
    local rows = { parallel(table.unpack(fns)) }
    assert.are.equal(4, #rows)
    local pids, latest_start, earliest_end = {}, -math.huge, math.huge
    for i, r in ipairs(rows) do
      assert.are.equal(i, r.n)
      pids[r.pid] = true
      latest_start = math.max(latest_start, epoch(db, r.s))
      earliest_end = math.min(earliest_end, epoch(db, r.e))
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.are.equal(4, n) -- four connections
    assert.is_true(latest_start < earliest_end, "every statement was running at one moment") -- they overlapped
    assert.are.equal(0, db:stats().in_use)
  end)

  it("keeps a transaction on its one connection, its statements in order", function()
    local a, b = parallel(function()
      local ok, first, second = db:transaction(function(tx)
        local r1 = tx:query_one(SPAN, 0.1, 1)
        local r2 = tx:query_one(SPAN, 0.1, 2)
        return r1, r2
      end)
      assert(ok, first)
      return { first, second }
    end, function() return db:query_one(SPAN, 0.2, 3) end)
    assert.are.equal(a[1].pid, a[2].pid)
    assert.is_true(epoch(db, a[1].e) <= epoch(db, a[2].s))
    assert.are_not.equal(a[1].pid, b.pid)
  end)

  it("raises the first error, cancels the others' statements and rolls back their transactions", function()
    db:exec("DROP TABLE IF EXISTS parallel_spec_t")
    db:exec("CREATE TABLE parallel_spec_t (x int)")
    local ok, err = pcall(parallel,
      function()
        return db:transaction(function(tx)
          tx:exec("INSERT INTO parallel_spec_t VALUES (1)")
          tx:exec("SELECT pg_sleep(30) /* parallel_spec */")
        end)
      end,
      function() return db:query_one("SELECT pg_sleep(0.2), 1 / 0 AS x") end)
    assert.is_false(ok)
    assert.are.equal("22012", err.sqlstate) -- the error as raised, an error object
    -- the server acts on a cancel request within moments, not 30 s
    assert.are.equal(0, h.eventually(function()
      return db:query_one("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' "
        .. "AND query LIKE '%pg_sleep(30) /* parallel_spec */%' AND pid <> pg_backend_pid()").n
    end, 0, 5))
    assert.are.equal(0, db:query_one("SELECT count(*) AS n FROM parallel_spec_t").n) -- nothing committed
    assert.are.equal(0, db:stats().in_use)
    db:exec("DROP TABLE parallel_spec_t")
  end)

  it("begins, commits and rolls back without blocking the others, and a COMMIT that fails ends the transaction", function()
    db:exec("DROP TABLE IF EXISTS parallel_spec_c")
    db:exec("CREATE TABLE parallel_spec_c (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    local committed, failed, rolled = parallel(
      function() return (db:transaction(function(tx) tx:exec("INSERT INTO parallel_spec_c VALUES (1)") end)) end,
      function() -- the duplicate is only found at COMMIT
        local ok, err = db:transaction(function(tx) tx:exec("INSERT INTO parallel_spec_c VALUES (2), (2)") end)
        return { ok = ok, state = err and err.sqlstate }
      end,
      function()
        local ok = db:transaction(function(tx)
          tx:exec("INSERT INTO parallel_spec_c VALUES (3)")
          local inner = tx:transaction(function(sp) sp:exec("INSERT INTO parallel_spec_c VALUES (4)") error("no") end)
          assert(inner == false) -- the savepoint rolled back alone
        end)
        return ok
      end)
    assert.is_true(committed)
    assert.are.same({ ok = false, state = "23505" }, failed)
    assert.is_true(rolled)
    local xs = {}
    for _, r in ipairs(db:query("SELECT x FROM parallel_spec_c ORDER BY x")) do xs[#xs + 1] = r.x end
    assert.are.same({ 1, 3 }, xs)
    assert.are.equal(0, db:stats().in_use)
    db:exec("DROP TABLE parallel_spec_c")
  end)

  it("waits for a connection when there are more functions than the pool holds", function()
    local small = h.db({ max_size = 2 })
    local fns = {}
    for i = 1, 5 do fns[i] = function() return small:query_one(SPAN, 0.05, i).n end end
    assert.are.same({ 1, 2, 3, 4, 5 }, { parallel(table.unpack(fns)) })
    -- and says so, rather than hanging, when no connection can come back
    local held1, held2 = small:acquire(), small:acquire()
    local ok, err = pcall(parallel, function() return small:query_one("SELECT 1 AS x") end)
    assert.is_false(ok)
    assert.are.equal("timeout", err.code)
    assert.matches("none will come back", err.message)
    held1:release()
    held2:release()
    assert.are.equal(1, (parallel(function() return small:query_one("SELECT 1 AS x").x end)))
    small:close()
  end)

  it("leaves the blocking API as it was, and runs nested parallel calls inside the outer one", function()
    assert.are.equal(7, db:query_one("SELECT 7 AS x").x) -- outside: no coroutine, no loop
    local a, b = parallel(function()
      local x, y = parallel(function() return db:query_one(SPAN, 0.05, 1).n end,
                            function() return db:query_one(SPAN, 0.05, 2).n end)
      return x + y
    end, function() return db:query_one(SPAN, 0.05, 10).n end)
    assert.are.same({ 3, 10 }, { a, b })
    -- a coroutine of the caller's own inside a function keeps blocking queries
    assert.are.equal(5, (parallel(function()
      local co = coroutine.wrap(function() return db:query_one("SELECT 5 AS x").x end)
      return co()
    end)))
  end)

  it("refuses what is not a function, and a function that yields by itself", function()
    assert.has_error(function() parallel(function() end, 42) end, "parallel: argument 2 is not a function")
    local ok, err = pcall(parallel, function() coroutine.yield("hello") end)
    assert.is_false(ok)
    assert.matches("yielded outside a query", err)
  end)

  it("reports a query's own error and keeps the connection usable", function()
    local ok, err = pcall(parallel, function() return db:query_one("SELECT * FROM no_such_table") end)
    assert.is_false(ok)
    assert.are.equal("42P01", err.sqlstate)
    assert.are.equal(1, (parallel(function() return db:query_one("SELECT 1 AS x").x end)))
    assert.are.equal(0, db:stats().in_use)
  end)
end)
