-- lua/quarry/stale.lua with lua/quarry/cache.lua: no cached figure older
-- than the data after a Redis fault during a write. Each fault is made for
-- real on a Redis of this spec's own (AOF on, so a restart brings back what
-- it held): paused, stopped and restarted, full.
local h = require "spec.helper"
local cjson = require "cjson"
local quarry = require "quarry"

local db = quarry.db
local dir = h.tmpname(".redis")
local sock = dir .. "/redis.sock"
local ENV = { REDIS_URL = "unix://" .. sock, QUARRY_CACHE_TIMEOUT = "200" }
local MONTH = "2033-07"

local function redis_cli(args)
  local p = io.popen(("redis-cli -s %s %s 2>&1"):format(h.shell_quote(sock), args))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function start_redis()
  assert(os.execute(("redis-server --port 0 --unixsocket %s --dir %s --daemonize yes --appendonly yes "
    .. "--appendfsync always --save '' --pidfile %s/redis.pid --logfile %s/redis.log"):format(
    h.shell_quote(sock), h.shell_quote(dir), h.shell_quote(dir), h.shell_quote(dir))))
  for _ = 1, 100 do
    if redis_cli("PING") == "PONG" then return end
    h.sleep(0.05)
  end
  error("the spec's Redis did not start")
end

local function stop_redis()
  redis_cli("SHUTDOWN") -- AOF is on: what it held comes back on the next start
  for _ = 1, 100 do
    if redis_cli("PING") ~= "PONG" then return end
    h.sleep(0.05)
  end
end

local function quarry_cmd(args, extra)
  local env = {}
  for k, v in pairs(ENV) do env[k] = v end
  for k, v in pairs(extra or {}) do env[k] = v end
  return h.quarry(args, env)
end

-- One day's curtailment of `mwh` (negative volume, as Elexon sends it).
local function ingest(mwh)
  local path = h.curtailment_csv({ ("%s-03,10,T_SGRWO-1,Seagreen Wind Energy Limited,-%s,-%s,-5,-5,true,false")
    :format(MONTH, mwh, mwh * 5) })
  local out, err, code = quarry_cmd("ingest curtailment " .. path)
  os.remove(path)
  return out, err, code
end

-- The month's curtailed MWh as `quarry report monthly` serves it, and
-- whether it came from the cache.
local function served()
  local file = h.tmpname(".json")
  local _, err, code = quarry_cmd(("report monthly --month %s --format json -o %s"):format(MONTH, file))
  assert.are.equal(0, code, err)
  local r = cjson.decode(h.read(file))
  os.remove(file)
  return tonumber(r.totals.curtailed_mwh), err:find("(cached)", 1, true) ~= nil
end

setup(function()
  os.execute("mkdir -p " .. h.shell_quote(dir))
  require("quarry.migrate").up(db)
  db:exec("INSERT INTO bitcoin_difficulty VALUES ($1::date, 100e12) ON CONFLICT (effective_date) DO NOTHING",
    MONTH .. "-01")
  start_redis()
end)

teardown(function()
  stop_redis()
  os.execute("rm -rf " .. h.shell_quote(dir))
end)

before_each(function()
  redis_cli("CONFIG SET maxmemory 0")
  redis_cli("FLUSHALL")
  assert.are.equal(0, select(3, ingest(10)))
  assert.are.same({ 10, false }, { served() })
  assert.are.same({ 10, true }, { served() }) -- cached from here on
end)

describe("a compute lock through a Redis restart", function()
  it("is released by its holder's next lookup, not left to block others until it expires", function()
    local c = require("quarry.cache").new({ url = "unix://" .. sock, prefix = "lockspec:", lock_ms = 60000,
                                            backoff_max_ms = 100 })
    -- the holder computes while Redis goes down: store and release fail,
    -- and Redis comes back from its file with the lock in it
    local v = c:get_or_compute("k", 60, function() stop_redis() return "computed" end)
    assert.are.equal("computed", v)
    start_redis()
    assert.are.equal("1", redis_cli("EVAL \"return #redis.call('KEYS', 'lockspec:lock:*')\" 0"))
    h.sleep(0.15) -- past the outage backoff
    assert.is_nil(c:get("other")) -- any lookup of the holder's releases it first
    assert.are.equal("0", redis_cli("EVAL \"return #redis.call('KEYS', 'lockspec:lock:*')\" 0"))
    c.conn:close()
  end)
end)

describe("a write during a Redis fault", function()
  it("paused: the write succeeds, says the invalidation waits, and no stale figure is served after", function()
    redis_cli("CLIENT PAUSE 1500 ALL")
    local _, err, code = ingest(20)
    assert.are.equal(0, code, err)
    assert.matches("kept in PostgreSQL", err)
    h.sleep(1.6) -- Redis is back, still holding the old figure under its old name
    assert.are.equal(20, (served()))
    assert.are.same({ 20, true }, { served() }) -- and caching again
  end)

  it("stopped, then restarted with what it held: no stale figure after", function()
    stop_redis()
    local _, err, code = ingest(30)
    assert.are.equal(0, code, err)
    start_redis()
    assert.matches("^%d+$", redis_cli("DBSIZE"))
    assert.is_true(tonumber(redis_cli("DBSIZE")) > 0, "the restart kept the old values")
    assert.are.equal(30, (served()))
  end)

  it("full (maxmemory, noeviction): the report computes, and caches once there is room", function()
    redis_cli("CONFIG SET maxmemory-policy noeviction")
    redis_cli("CONFIG SET maxmemory 1")
    local _, err, code = ingest(40)
    assert.are.equal(0, code, err)
    assert.matches("kept in PostgreSQL", err)
    assert.are.same({ 40, false }, { served() })
    -- an invalidation by hand that Redis refuses is an error, not "invalidated"
    local out
    out, err, code = quarry_cmd(("cache invalidate 'monthly_mining:%s:*'"):format(MONTH))
    assert.are.equal(1, code, out)
    assert.matches("OOM", err)
    out, err, code = quarry_cmd("cache invalidate --date " .. MONTH .. "-03")
    assert.are.equal(1, code, out)
    assert.matches("OOM", err)
    redis_cli("CONFIG SET maxmemory 0")
    assert.are.same({ 40, false }, { served() })
    assert.are.same({ 40, true }, { served() })
  end)

  it("lost every key but the values (the mark evicted or deleted): starts a new epoch", function()
    redis_cli("DEL quarry:applied quarry:epoch") -- the default prefix
    -- a write that never reached Redis at all (as if the writer died after COMMIT)
    db:exec("UPDATE curtailment_records SET volume = -50, payment = -250 WHERE settlement_date = $1::date",
      MONTH .. "-03")
    require("quarry.rollup").refresh(db, { MONTH .. "-03" })
    db:transaction(function(tx) require("quarry.rules").record(tx, "curtailment_records", { MONTH .. "-03" }) end)
    assert.are.equal(50, (served()))
  end)
end)

describe("the invalidation log", function()
  it("numbers entries in commit order and is read back in order", function()
    local stale = require "quarry.stale"
    local log = stale.log(function() return db end)
    local before = log:latest()
    local ok, seq = db:transaction(function(tx) return stale.record(tx, { "a:*", 'odd "quoted" \\ pattern:*' }) end)
    assert.is_true(ok)
    assert.are.equal(before + 1, seq)
    local rows = log:since(before)
    assert.are.equal(1, #rows)
    assert.are.same({ "a:*", 'odd "quoted" \\ pattern:*' }, rows[1].patterns)
    -- a write that rolls back leaves no entry
    db:transaction(function(tx)
      stale.record(tx, { "b:*" })
      error("changed my mind")
    end)
    assert.are.equal(seq, log:latest())
  end)

  it("is read once for the tasks that ask at the same time, never answering one with a read sent before it asked",
    function()
    local stale = require "quarry.stale"
    local core = require "quarry.core"
    -- the real database, its answers held back a while after PostgreSQL gave
    -- them, so callers come while a read is on its way
    local reads = 0
    local slow = setmetatable({ query_one = function(_, ...)
      reads = reads + 1
      local r = db:query_one(...)
      core.sleep(0.2)
      return r
    end }, { __index = function(_, k) return function(_, ...) return db[k](db, ...) end end })
    local log = stale.log(function() return slow end)
    local seen = {}
    local function write() -- in PostgreSQL, on another connection than the reads
      local ok, seq = db:transaction(function(tx) return stale.record(tx, { "coalesce:*" }) end)
      assert.is_true(ok)
      return seq
    end
    local before = db:query_one("SELECT coalesce(max(seq), 0) AS s FROM quarry_cache_invalidations").s
    local written
    quarry.parallel(
      function() seen.first = log:latest() end, -- its read is sent first; the write comes after it
      function()
        core.sleep(0.05)
        written = write()
        -- asked after the write committed, while the first read is still on
        -- its way: that read's answer (the seq before) would be stale here
        local a, b, c = quarry.parallel(function() return log:latest() end, function() return log:latest() end,
          function() return log:latest() end)
        seen.after = { a, b, c }
      end)
    assert.are.equal(before, seen.first)
    assert.are.same({ written, written, written }, seen.after)
    assert.are.equal(2, reads, "the three who came during the first read share the next")
    -- out of a task, each call reads for itself
    reads = 0
    assert.are.equal(written, log:latest())
    assert.are.equal(written, log:latest())
    assert.are.equal(2, reads)
  end)

  it("goes on reading for the others when a caller's task is stopped while it waits or reads", function()
    local stale = require "quarry.stale"
    local core = require "quarry.core"
    local slow = setmetatable({ query_one = function(_, ...)
      local r = db:query_one(...)
      core.sleep(0.1)
      return r
    end }, { __index = function(_, k) return function(_, ...) return db[k](db, ...) end end })
    local log = stale.log(function() return slow end)
    local latest = db:query_one("SELECT coalesce(max(seq), 0) AS s FROM quarry_cache_invalidations").s
    -- the reader and the first in line both fail (their parallel is stopped by
    -- the error of a third function); a later caller still gets its answer
    local ok, err = pcall(quarry.parallel,
      function() return log:latest() end,
      function() core.sleep(0.02) return log:latest() end,
      function() core.sleep(0.05) error("stopped", 0) end)
    assert.is_false(ok)
    assert.are.equal("stopped", err)
    local got = quarry.parallel(function() return log:latest() end)
    assert.are.equal(latest, got)
    -- and one whose read fails passes the error to those who shared it
    local broken = setmetatable({ query_one = function()
      core.sleep(0.05)
      error("the log cannot be read", 0)
    end }, { __index = slow })
    local log2 = stale.log(function() return broken end)
    local a, b = pcall(quarry.parallel, function() return log2:latest() end,
      function() core.sleep(0.01) return log2:latest() end)
    assert.is_false(a)
    assert.are.equal("the log cannot be read", b)
  end)

  it("is pruned by writers to what Redis applied over a day ago, keeping the latest entry", function()
    local stale = require "quarry.stale"
    local log = stale.log(function() return db end)
    for i = 1, 3 do
      db:transaction(function(tx) return stale.record(tx, { "old" .. i .. ":*" }) end)
    end
    local latest = log:latest()
    db:exec("UPDATE quarry_cache_invalidations SET at = now() - interval '2 days'")
    log:prune(latest)
    assert.are.equal(latest, log:latest(), "the latest entry stays")
    local rows, pruned = log:since(0)
    assert.are.equal(1, #rows)
    assert.are.equal(latest - 1, pruned)
    -- a Redis whose mark is older than the pruned entries starts a new epoch
    redis_cli("SET quarry:applied " .. (pruned - 1))
    local epoch = redis_cli("GET quarry:epoch")
    assert.are.equal(10, (served()))
    assert.are_not.equal(epoch, redis_cli("GET quarry:epoch"))
    assert.are.equal(tostring(latest), redis_cli("GET quarry:applied"))
  end)
end)
