-- lua/quarry/db.lua and src/lua_pool.c: queries, values, errors, transactions.
local h = require "spec.helper"
local quarry = require "quarry"
-- behind PgBouncer (tests/CMakeLists.txt): listed as pending, see spec/helper.lua
local it_session = h.behind_pooler and pending or it

describe("db queries", function()
  local db
  setup(function()
    db = h.db()
    require("quarry.migrate").up(db)
  end)
  teardown(function() db:close() end)

  it("returns typed values by column type", function()
    local r = db:query_one([[SELECT 1::int2 AS a, 2::int4 AS b, 9007199254740993::int8 AS c,
      1.25::float8 AS f, true AS t, false AS u, NULL::int AS z, DATE '2024-03-01' AS d,
      TIMESTAMPTZ '2024-03-01 12:00:00+01' AS ts, '{"x": [1, "y"], "n": null}'::jsonb AS j,
      '[1,2]'::json AS ja, 'héllo'::text AS s]])
    assert.are.equal("integer", math.type(r.a))
    assert.are.equal(2, r.b)
    assert.are.equal(9007199254740993, r.c) -- past 2^53: exact only as an integer
    assert.are.equal("float", math.type(r.f))
    assert.are.equal(1.25, r.f)
    assert.is_true(r.t)
    assert.is_false(r.u)
    assert.is_nil(r.z)
    assert.are.equal("2024-03-01", r.d)
    assert.are.equal("2024-03-01 11:00:00+00", r.ts) -- ISO, UTC
    assert.are.equal("y", r.j.x[2])
    assert.are.equal(2, #r.ja)
    assert.are.equal("héllo", r.s)
  end)

  it("keeps every digit of numeric", function()
    local r = db:query_one([[SELECT 123456789012345678901234567890.000000000000000000001::numeric AS n,
      (0.1::numeric + 0.2::numeric) AS s, -0.00000001234::numeric AS tiny]])
    assert.are.equal("123456789012345678901234567890.000000000000000000001", r.n)
    assert.are.equal("0.3", r.s)
    assert.are.equal("-0.00000001234", r.tiny)
  end)

  it("returns bytea as raw bytes", function()
    local r = db:query_one("SELECT '\\x00ff410a'::bytea AS b")
    assert.are.equal("\0\255A\n", r.b)
  end)

  it("describes the columns in rows.fields", function()
    local rows = db:query("SELECT 1 AS one, 'x'::text AS two, 1.5::numeric AS three")
    assert.are.same({ "one", "two", "three" },
      { rows.fields[1].name, rows.fields[2].name, rows.fields[3].name })
    assert.are.same({ "int4", "text", "numeric" },
      { rows.fields[1].type, rows.fields[2].type, rows.fields[3].type })
  end)

  it("returns all rows, the first row or nil, and affected counts", function()
    local rows = db:query("SELECT g FROM generate_series(1, 1000) g")
    assert.are.equal(1000, #rows)
    assert.are.equal(1000, rows[1000].g)
    assert.is_nil(db:query_one("SELECT 1 AS x WHERE false"))
    assert.are.equal(7, db:exec("SELECT generate_series(1, 7)"))
    db:exec("CREATE TABLE IF NOT EXISTS spec_counts (a int)")
    db:exec("TRUNCATE spec_counts")
    assert.are.equal(3, db:exec("INSERT INTO spec_counts SELECT generate_series(1, 3)"))
    assert.are.equal(2, db:exec("DELETE FROM spec_counts WHERE a > $1", 1))
    db:exec("DROP TABLE spec_counts")
  end)

  it("sends parameters apart from the SQL: an injection is just a value", function()
    db:exec("CREATE TABLE IF NOT EXISTS spec_victim (d text)")
    local evil = "2024-01-01'; DROP TABLE spec_victim; --"
    local r = db:query_one("SELECT $1::text AS v, length($1) AS n", evil)
    assert.are.equal(evil, r.v)
    assert.are.equal(#evil, r.n)
    db:exec("INSERT INTO spec_victim VALUES ($1)", evil)
    assert.are.equal(evil, db:query_one("SELECT d FROM spec_victim").d)
    -- a bad date as a date parameter is an error from the server, not SQL
    local ok, err = pcall(db.query, db, "SELECT $1::date AS d", evil)
    assert.is_false(ok)
    assert.are.equal("22007", err.sqlstate)
    assert.is_not_nil(db:query_one("SELECT to_regclass('spec_victim') AS t").t)
    db:exec("DROP TABLE spec_victim")
  end)

  it("converts parameters of every Lua type exactly", function()
    local r = db:query_one("SELECT $1::bigint AS i, $2::float8 AS f, $3::bool AS b, $4::text AS n, $5::float8 AS g",
      math.maxinteger, 0.1, true, nil, 1e300)
    assert.are.equal(math.maxinteger, r.i)
    assert.are.equal(0.1, r.f)
    assert.is_true(r.b)
    assert.is_nil(r.n)
    assert.are.equal(1e300, r.g)
    assert.has_error(function() db:query("SELECT $1", {}) end)
    assert.has_error(function() db:query("SELECT $1::text", "a\0b") end)
  end)

  if h.behind_pooler then
    it("without DB_PREPARE=off, is refused by the pooler with a message saying what to set", function()
      local _, err, code = h.quarry("shell -c 'db:query_one([[SELECT 1 AS x]])'", { DB_PREPARE = "on" })
      assert.are.equal(3, code)
      assert.matches("unsupported startup parameter: options %(behind PgBouncer in transaction mode%? set "
        .. "DB_PREPARE=off%)", err)
      local out
      out, err, code = h.quarry("shell -c 'db:query_one([[SELECT current_setting($1) AS d]], [[TimeZone]]).d'")
      assert.are.equal(0, code, err)
      assert.are.equal("UTC\n", out) -- the session settings quarry relies on, through the pooler
    end)
  end

  it_session("reuses a prepared statement per connection", function()
    local conn <close> = db:acquire()
    for i = 1, 3 do conn:query("SELECT $1::int + 1 AS spec_prepared", i) end
    local n = conn:query_one([[SELECT count(*) AS n FROM pg_prepared_statements
      WHERE strpos(statement, 'AS spec_' || 'prepared') > 0]]).n
    assert.are.equal(1, n)
  end)

  it("runs a multi-statement script without parameters", function()
    db:exec("CREATE TEMP TABLE IF NOT EXISTS x1 (a int); DROP TABLE x1")
  end)

  it("raises one error shape with sqlstate, position and tostring", function()
    local ok, err = pcall(db.query, db, "SELECT * FROM no_such_table")
    assert.is_false(ok)
    assert.are.equal("query", err.code)
    assert.are.equal("42P01", err.sqlstate)
    assert.are.equal(15, err.position)
    assert.matches('relation "no_such_table" does not exist', err.message)
    assert.matches("42P01", tostring(err))
    assert.is_false(err.retryable)
    ok, err = pcall(db.exec, db, "INSERT INTO miner_models (name, hashrate_th, power_watts) VALUES ('bad name', 1, 1)")
    assert.is_false(ok)
    assert.is_not_nil(err.sqlstate)
  end)
end)

describe("db:transaction", function()
  local db
  setup(function()
    db = h.db()
    db:exec("CREATE TABLE IF NOT EXISTS spec_tx (a int)")
  end)
  before_each(function() db:exec("TRUNCATE spec_tx") end)
  teardown(function()
    db:exec("DROP TABLE spec_tx")
    db:close()
  end)

  local function count() return db:query_one("SELECT count(*) AS n FROM spec_tx").n end

  it("commits and returns true and the function's results", function()
    local ok, a, b = db:transaction(function(tx)
      tx:exec("INSERT INTO spec_tx VALUES (1), (2)")
      return "done", tx:query_one("SELECT count(*) AS n FROM spec_tx").n
    end)
    assert.is_true(ok)
    assert.are.equal("done", a)
    assert.are.equal(2, b)
    assert.are.equal(2, count())
  end)

  it("rolls back on a thrown error and returns false, err", function()
    local ok, err = db:transaction(function(tx)
      tx:exec("INSERT INTO spec_tx VALUES (1)")
      error("script failed")
    end)
    assert.is_false(ok)
    assert.matches("script failed", err)
    assert.are.equal(0, count())
    assert.are.equal(0, db:stats().in_use)
  end)

  it("rolls back on a database error", function()
    local ok, err = db:transaction(function(tx)
      tx:exec("INSERT INTO spec_tx VALUES (1)")
      tx:exec("INSERT INTO spec_tx VALUES ('not a number')")
    end)
    assert.is_false(ok)
    assert.are.equal("22P02", err.sqlstate)
    assert.are.equal(0, count())
  end)

  it("refuses to commit a transaction whose error was swallowed", function()
    local ok, err = db:transaction(function(tx)
      tx:exec("INSERT INTO spec_tx VALUES (1)")
      pcall(tx.exec, tx, "SELECT 1/0")
      return "pretend all is well"
    end)
    assert.is_false(ok)
    assert.matches("rolled back", tostring(err.message))
    assert.are.equal(0, count())
  end)

  it("nests with savepoints: an inner failure rolls back only the inner work", function()
    local ok = db:transaction(function(tx)
      tx:exec("INSERT INTO spec_tx VALUES (1)")
      local inner_ok = tx:transaction(function(inner)
        inner:exec("INSERT INTO spec_tx VALUES (2)")
        error("inner fails")
      end)
      assert.is_false(inner_ok)
      local inner2 = tx:transaction(function(inner) inner:exec("INSERT INTO spec_tx VALUES (3)") end)
      assert.is_true(inner2)
    end)
    assert.is_true(ok)
    local rows = db:query("SELECT a FROM spec_tx ORDER BY a")
    assert.are.same({ 1, 3 }, { rows[1].a, rows[2].a })
  end)

  it("takes isolation and read-only options", function()
    local ok, iso = db:transaction(function(tx)
      return tx:query_one("SELECT current_setting('transaction_isolation') AS i").i
    end, { isolation = "serializable" })
    assert.is_true(ok)
    assert.are.equal("serializable", iso)
    local ok2, err = db:transaction(function(tx) tx:exec("INSERT INTO spec_tx VALUES (1)") end,
      { read_only = true })
    assert.is_false(ok2)
    assert.are.equal("25006", err.sqlstate)
    assert.has_error(function() db:transaction(function() end, { isolation = "chaos; DROP TABLE x" }) end)
  end)

  it("runs setup statements in BEGIN's round trip; a failing one begins nothing and leaves no aborted session", function()
    local setup = "SET LOCAL statement_timeout = 4321; SET LOCAL plan_cache_mode = force_generic_plan"
    local function check(tx)
      local r = tx:query_one("SELECT current_setting('statement_timeout') AS t, current_setting('plan_cache_mode') AS m")
      return r.t, r.m
    end
    local ok, t, m = db:transaction(check, { read_only = true, setup = setup })
    assert.is_true(ok)
    assert.are.same({ "4321ms", "force_generic_plan" }, { t, m })
    -- the same from a task (the non-blocking path)
    local got = quarry.parallel(function() -- (one result per function)
      local cok, a, b = db:transaction(check, { setup = setup })
      assert(cok, tostring(a))
      return { a, b }
    end)
    assert.are.same({ "4321ms", "force_generic_plan" }, got)
    -- the rows of the setup's last statement come to the function, on both paths
    local function seven(tx, rows) return rows[1].n + tx:query_one("SELECT 1 AS one").one end
    local sok, eight = db:transaction(seven, { setup = setup .. "; SELECT 7 AS n" })
    assert.is_true(sok)
    assert.are.equal(8, eight)
    assert.are.equal(8, quarry.parallel(function()
      return select(2, db:transaction(seven, { setup = setup .. "; SELECT 7 AS n" }))
    end))
    -- SET LOCAL lasts only for its transaction
    assert.are_not.equal("4321ms", db:query_one("SELECT current_setting('statement_timeout') AS t").t)
    for _, in_task in ipairs({ false, true }) do
      local function bad()
        return db:transaction(function() error("must not run") end, { setup = "SET LOCAL no_such.x TO 1; SELECT 1/0" })
      end
      local bok, err
      if in_task then
        bok, err = table.unpack(quarry.parallel(function() return table.pack(bad()) end))
      else
        bok, err = bad()
      end
      assert.is_false(bok)
      assert.are.equal("22012", err.sqlstate)
      -- the connection it used is clean (or was discarded): the next statements run
      for _ = 1, 3 do assert.are.equal(1, db:query_one("SELECT 1 AS x").x) end
      assert.are.equal(0, db:stats().in_use)
    end
    -- with a held connection: the failed begin leaves it outside any transaction
    local c <close> = db:acquire()
    assert.has_error(function() c:begin({ setup = "SELECT 1/0" }) end)
    assert.are.equal(0, c:depth())
    assert.are.equal(1, c:query_one("SELECT 1 AS x").x)
  end)

  it("releases the connection however the transaction ends", function()
    for _ = 1, 50 do
      db:transaction(function() error({ code = "mine" }) end)
      db:transaction(function(tx) tx:exec("SELECT 1") end)
    end
    local s = db:stats()
    assert.are.equal(0, s.in_use)
    assert.is_true(s.total <= 5)
  end)

  -- Behind PgBouncer (this spec runs there too) the pid libpq knows is the
  -- pooler's: the note once found no holder there and said nothing.
  it("says who holds the lock a statement waits for, and goes on once it is free", function()
    db:exec("DROP TABLE IF EXISTS lock_note_t")
    db:exec("CREATE TABLE lock_note_t (id int)")
    db:exec("INSERT INTO lock_note_t VALUES (1)")
    local path, err_file, rc_file = h.tmpname(".lua"), h.tmpname(".err"), h.tmpname(".rc")
    h.write(path, [[require("quarry").db:exec("UPDATE lock_note_t SET id = 2")]])
    local holder = h.db({ max_size = 1 })
    local server_pid
    assert(holder:transaction(function(tx)
      server_pid = tx:query_one("SELECT pg_backend_pid() AS p").p -- the server's, through a pooler too
      tx:query("SELECT id FROM lock_note_t FOR UPDATE")
      os.execute(("(%s run %s 2>%s; echo $? >%s) >/dev/null &"):format(h.shell_quote(h.bin), h.shell_quote(path),
        h.shell_quote(err_file), h.shell_quote(rc_file)))
      local said = h.eventually(function() return (h.read(err_file) or ""):match("waited %d+ s for a lock held by")
        ~= nil end, true, 15)
      assert.is_true(said, h.read(err_file))
      assert.matches("held by pid " .. server_pid .. " %(", h.read(err_file))
      assert.is_nil(h.read(rc_file), "the statement went on past the lock")
    end))
    holder:close()
    assert.is_true(h.eventually(function() return h.read(rc_file) ~= nil end, true, 15))
    assert.are.equal("0", (h.read(rc_file):gsub("%s+", "")))
    assert.are.equal(2, db:query_one("SELECT id FROM lock_note_t").id)
    db:exec("DROP TABLE lock_note_t")
    for _, f in ipairs({ path, err_file, rc_file }) do os.remove(f) end
  end)
end)

describe("db:acquire", function()
  it("holds a connection until its <close> scope ends", function()
    local db = h.db()
    do
      local c <close> = db:acquire()
      c:exec("SELECT 1")
      assert.are.equal(1, db:stats().in_use)
    end
    assert.are.equal(0, db:stats().in_use)
    local c = db:acquire()
    c:release()
    c:release() -- idempotent
    assert.has_error(function() c:query("SELECT 1") end, nil)
    assert.are.equal(0, db:stats().in_use)
    db:close()
  end)

  it("rolls back a connection given back inside a transaction", function()
    local db = h.db({ max_size = 1 })
    db:exec("CREATE TABLE IF NOT EXISTS spec_giveback (a int)")
    local c = db:acquire()
    c:begin()
    c:exec("INSERT INTO spec_giveback VALUES (1)")
    c:release()
    local r = db:query_one("SELECT count(*) AS n, pg_current_xact_id_if_assigned() IS NULL AS clean FROM spec_giveback")
    assert.are.equal(0, r.n)
    assert.is_true(r.clean)
    db:exec("DROP TABLE spec_giveback")
    db:close()
  end)
end)

describe("db:explain", function()
  it("returns the plan as a table and rolls back writes", function()
    local db = h.db()
    db:exec("CREATE TABLE IF NOT EXISTS spec_explain (a int)")
    db:exec("TRUNCATE spec_explain")
    local plan = db:explain("INSERT INTO spec_explain SELECT generate_series(1, $1::int)", 10)
    assert.are.equal("ModifyTable", plan.Plan["Node Type"])
    assert.is_number(plan["Execution Time"])
    assert.are.equal(0, db:query_one("SELECT count(*) AS n FROM spec_explain").n)
    db:exec("DROP TABLE spec_explain")
    db:close()
  end)
end)

-- What drivers such as pgx, JDBC and node-postgres do, and quarry must too.
describe("the query layer", function()
  local db
  local core = require "quarry.core"
  setup(function() db = h.db({ max_size = 1 }) end) -- one connection: every call reuses it
  teardown(function()
    db:exec("DROP TABLE IF EXISTS ql_shape")
    db:close()
  end)

  it("prepares again after the schema changes under a prepared statement", function()
    db:exec("DROP TABLE IF EXISTS ql_shape")
    db:exec("CREATE TABLE ql_shape (a int)")
    db:exec("INSERT INTO ql_shape VALUES (1)")
    local sql = "SELECT * FROM ql_shape"
    assert.are.equal(1, db:query_one(sql).a)
    db:exec("ALTER TABLE ql_shape ALTER COLUMN a TYPE text")
    assert.are.equal("1", db:query_one(sql).a)
    db:exec("DROP TABLE ql_shape")
    db:exec("CREATE TABLE ql_shape (a int, b int)")
    db:exec("INSERT INTO ql_shape VALUES (2, 3)")
    assert.are.same({ a = 2, b = 3 }, db:query_one(sql))
    db:exec("DEALLOCATE ALL")
    assert.are.same({ a = 2, b = 3 }, db:query_one(sql))
  end)

  it_session("recovers the statement after a failed transaction that saw the change", function()
    db:exec("DROP TABLE IF EXISTS ql_shape")
    db:exec("CREATE TABLE ql_shape (a int)")
    local sql = "SELECT a FROM ql_shape"
    db:query(sql)
    local ok, err = db:transaction(function(tx)
      tx:exec("ALTER TABLE ql_shape ALTER COLUMN a TYPE bigint")
      return tx:query(sql)
    end)
    assert.is_false(ok)
    assert.matches("cached plan", tostring(err))
    assert.are.equal(0, #db:query(sql)) -- the next use works
  end)

  it("calls a wrong parameter count a usage error, and the connection goes on", function()
    local ok, err = pcall(db.query, db, "SELECT $1::int + $2::int AS s", 1)
    assert.is_false(ok)
    assert.are.equal("usage", err.code)
    assert.is_false(err.retryable)
    -- (behind a pooler the statement is not described first: the server's words)
    assert.matches(h.behind_pooler and "supplies 1 parameters, but .* requires 2" or "takes 2 parameters, 1 given",
      err.message)
    local one = db:query_one("SELECT $1::int AS x", 5)
    assert.are.equal(5, one.x)
    ok, err = pcall(db.query, db, "SELECT $1::int AS x", 1, 2)
    assert.is_false(ok)
    assert.are.equal("usage", err.code)
  end)

  it("round-trips any byte string as a bytea parameter", function()
    if h.behind_pooler then -- an unnamed statement's parameter types are unknown: zero bytes are refused
      local ok, err = pcall(db.query_one, db, "SELECT $1::bytea AS b", "a\0b")
      assert.is_false(ok)
      assert.matches("zero byte", tostring(err))
      assert.are.equal("ab", db:query_one("SELECT $1::bytea AS b", "ab").b)
      return
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    for _, bytes in ipairs({ "", "\0", "\\x41", "a\0b", "\255\254", table.concat(all) }) do
      local r = db:query_one("SELECT $1::bytea AS b, length($1::bytea) AS n", bytes)
      assert.are.equal(bytes, r.b)
      assert.are.equal(#bytes, r.n)
    end
    local ok, err = pcall(db.query, db, "SELECT $1::text AS t", "a\0b")
    assert.is_false(ok)
    assert.matches("zero byte", err.message)
  end)

  it("returns an empty result for zero columns and for the empty query", function()
    for _, sql in ipairs({ "SELECT", "", "SELECT FROM generate_series(1, 3)" }) do
      local rows = db:query(sql)
      assert.is_table(rows, sql)
      assert.are.equal(0, #rows.fields)
    end
    assert.are.equal(3, #db:query("SELECT FROM generate_series(1, 3)"))
  end)

  it("decodes arrays of scalar types to Lua arrays, exact numerics and NULLs included", function()
    local r = db:query_one([[SELECT ARRAY[1, NULL, 3]::int[] AS i, ARRAY[9007199254740993]::int8[] AS b,
      ARRAY[1.10, 0.000000000001]::numeric[] AS n, ARRAY['a', 'b,c', '"q"', 'NULL', NULL, '{x}', 'x\y', '']::text[] AS t,
      ARRAY[true, false]::bool[] AS tf, ARRAY[1.5]::float8[] AS f, ARRAY[DATE '2024-03-31']::date[] AS d,
      '{{1,2},{3,4}}'::int[] AS m, '[0:1]={7,8}'::int[] AS lb, '{}'::int[] AS e]])
    assert.are.same({ 1, core.null, 3 }, r.i)
    assert.are.equal(r.i[2], require("cjson").null)
    assert.are.equal(9007199254740993, r.b[1])
    assert.are.same({ "1.10", "0.000000000001" }, r.n)
    assert.are.same({ "a", "b,c", '"q"', "NULL", core.null, "{x}", "x\\y", "" }, r.t)
    assert.are.same({ true, false }, r.tf)
    assert.are.equal(1.5, r.f[1])
    assert.are.same({ "2024-03-31" }, r.d)
    assert.are.same({ { 1, 2 }, { 3, 4 } }, r.m)
    assert.are.same({ 7, 8 }, r.lb)
    assert.are.same({}, r.e)
  end)
end)
