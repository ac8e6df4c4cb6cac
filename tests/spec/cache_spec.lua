-- lua/quarry/cache.lua, src/cache.c, src/lua_cache.c and src/lua_codec.c
-- against the real Redis the test run started, across real processes.
local h = require "spec.helper"
local core = require "quarry.core"
local cachemod = require "quarry.cache"

local redis_sock = h.urls().REDIS_URL:match("^unix://(.*)$")
local function redis_cli(args)
  local p = io.popen(("redis-cli -s %s %s 2>&1"):format(redis_sock, args))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- quarry.cache checks every value against the invalidation log: the schema
-- must be there, whichever spec runs first.
require("quarry.migrate").up(h.db())

local n = 0
local function fresh_prefix()
  n = n + 1
  return ("spec%d-%d:"):format(n, core.now_ns() % 1000000007)
end

local function new_cache(opts)
  local o = { url = h.urls().REDIS_URL, prefix = fresh_prefix() }
  for k, v in pairs(opts or {}) do o[k] = v end
  return cachemod.new(o)
end

-- Start `count` quarry processes running `code` at once; their outputs.
local function processes(count, code, env)
  local script = h.write(h.tmpname(".lua"), code)
  local outs, cmds = {}, {}
  for i = 1, count do
    outs[i] = h.tmpname(".out")
    local prefix = ""
    for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. h.shell_quote(v) .. " " end
    cmds[i] = ("(%s%s run %s %d > %s 2>&1)"):format(prefix, h.shell_quote(h.bin), script, i, outs[i])
  end
  os.execute(table.concat(cmds, " & ") .. " & wait")
  local results = {}
  for i = 1, count do
    results[i] = h.read(outs[i]) or ""
    os.remove(outs[i])
  end
  os.remove(script)
  return results
end

-- Dates other specs changed outside quarry would be mended by this spec's
-- first cache read, with a warning in the output its tests compare: mend
-- them first (lua/quarry/outside.lua).
setup(function() require("quarry.outside").repair(require("quarry").db, nil, { quiet = true }) end)

describe("cache values", function()
  it("round-trip every Lua type exactly through Redis", function()
    local c = new_cache()
    local value = {
      int = math.maxinteger, negint = math.mininteger, float = 0.1, tiny = 5e-324, big = 1.7976931348623157e308,
      negzero = -0.0, inf = math.huge, numeric = "123456789012345678901234567890.000000000000000000001",
      bytes = "\0\1\255 quarry \r\n", yes = true, no = false, empty = {}, list = { 1, "two", 3.0, { 4 } },
      sparse = { [1] = "a", [3] = "c", [-1] = "neg", [1.5] = "float key" }, [true] = "bool key",
      nested = { a = { b = { c = { d = "deep" } } } },
    }
    assert.is_true(c:set("types", value, 60))
    local back = c:get("types")
    assert.are.same(value, back)
    assert.are.equal("integer", math.type(back.int))
    assert.are.equal("float", math.type(back.list[3]))
    assert.are.equal(-math.huge, 1 / back.negzero)
    assert.are.equal(value.numeric, back.numeric)
    local nan = c:set("nan", 0 / 0, 60) and c:get("nan")
    assert.is_true(nan ~= nan)
    c:clear()
  end)

  it("refuses to store what it cannot represent, and still computes it", function()
    local c = new_cache()
    local v = c:get_or_compute("fn", 60, function() return { f = print } end)
    assert.are.equal(print, v.f)
    assert.is_nil(c:get("fn"))
    c:clear()
  end)

  it("treats a corrupt or foreign value as a miss, warns once, and replaces it", function()
    local prefix = fresh_prefix()
    local code = [[
local c = require("quarry").cache
local v = c:get_or_compute("daily_mining:2024-03-01:S9:all", 60, function() return "fresh" end)
io.write(v, " ", c:stats().process.errors, "\n")
]]
    local env = { QUARRY_CACHE_PREFIX = prefix }
    local header = "QRC2\0\0\0\0" .. string.pack("<i8", os.time() * 1000 + 60000)
    assert.matches("^fresh 0\n$", processes(1, code, env)[1])
    -- the stored name of the key, as Redis has it
    local name = redis_cli("--raw KEYS " .. h.shell_quote(prefix .. "daily_mining:2024-03-01:S9:all@*"))
    assert.matches("@", name)
    for _, garbage in ipairs({ "not ours", header .. "Q\1t\255\255\255\255\15", header .. "Q\1s\200" }) do
      local f = h.write(h.tmpname(), garbage)
      redis_cli(("-x SET %s < %s"):format(h.shell_quote(name), f))
      os.remove(f)
      local out = processes(1, code, env)[1]
      assert.matches("fresh 1\n", out, 1, true)
      local _, warnings = out:gsub("corrupt or foreign value", "")
      assert.are.equal(1, warnings)
      -- replaced: the next process hits
      assert.matches("^fresh 0\n$", processes(1, code, env)[1])
    end
  end)
end)

describe("cache sharing", function()
  it("shares a value between two processes", function()
    local env = { QUARRY_CACHE_PREFIX = fresh_prefix() }
    local code = [[
local c = require("quarry").cache
local computed = false
local v = c:get_or_compute("shared", c.TTL.MEDIUM, function() computed = true return { n = 42 } end)
print(computed and "computed" or "hit", v.n)
]]
    assert.are.equal("computed\t42\n", processes(1, code, env)[1])
    assert.are.equal("hit\t42\n", processes(1, code, env)[1])
  end)

  it("computes a missing key once when 8 processes ask at the same time", function()
    local prefix = fresh_prefix()
    local code = [[
local quarry = require "quarry"
local c = quarry.cache
local v = c:get_or_compute("slow", 60, function()
  c.conn:call("INCR", "]] .. prefix .. [[computed")
  require("quarry.core").sleep(0.5)
  return "value-" .. arg[1]
end)
print(v)
]]
    local outs = processes(8, code, { QUARRY_CACHE_PREFIX = prefix })
    assert.are.equal("1", redis_cli("GET " .. prefix .. "computed"))
    local first = outs[1]
    assert.matches("^value%-%d\n$", first)
    for i = 2, 8 do assert.are.equal(first, outs[i]) end
  end)

  it("is not blocked past the lock's expiry by a holder that died", function()
    -- waiting longer than the lock lives: the lock's expiry, not the wait's
    -- end, is what lets this one compute (and store) -- the two were a race
    local c = new_cache({ lock_ms = 400, wait_ms = 5000 })
    local name = c.prefix .. "orphan@0"
    -- a lock left by a process that crashed mid-compute, on another host (its token not ours to judge)
    redis_cli(("SET %slock:%s dead-holder PX 400"):format(c.prefix, name))
    local t0 = core.now_ns()
    local v = c:get_or_compute("orphan", 60, function() return "recovered" end)
    local secs = (core.now_ns() - t0) / 1e9
    assert.are.equal("recovered", v)
    assert.is_true(secs >= 0.3 and secs < 1.5, secs)
    assert.are.equal("recovered", c:get("orphan"))
    assert.are.equal(1, c:stats().process.lock_waits)
    c:clear()
  end)

  it("takes over at once a lock whose holder on this host was killed mid-compute, never a live holder's", function()
    local prefix = fresh_prefix()
    local pidfile = h.tmpname(".pid")
    local script = h.write(h.tmpname(".lua"), ([[
      local core = require "quarry.core"
      local c = require("quarry.cache").new({ url = %q, prefix = %q, lock_ms = 60000 })
      c:get_or_compute("k", 60, function()
        local f = io.open(%q, "w") f:write(core.getpid()) f:close()
        core.sleep(60) return "never"
      end)]]):format(h.urls().REDIS_URL, prefix, pidfile))
    os.execute(("%s run %s >/dev/null 2>&1 &"):format(h.shell_quote(h.bin), script))
    local pid
    for _ = 1, 200 do
      pid = h.read(pidfile)
      if pid and pid ~= "" then break end
      core.sleep(0.05)
    end
    assert.is_truthy(pid, "the holder never started computing")
    local c = new_cache({ lock_ms = 60000, wait_ms = 60000 })
    c.prefix = prefix
    -- alive: its lock is respected (waited for, not taken)
    local lock = redis_cli(("--raw KEYS '%slock:*'"):format(prefix))
    local holder = redis_cli(("--raw GET '%s'"):format(lock))
    assert.matches("^q1 %S+ " .. pid .. " ", holder)
    assert.is_false(cachemod.holder_gone(holder))
    assert.is_false(cachemod.holder_gone("q1 elsewhere/pid:[1] " .. pid .. " 1 abc")) -- another host: trusted
    os.execute("kill -9 " .. pid)
    core.sleep(0.1)
    assert.is_true(cachemod.holder_gone(holder))
    local t0 = core.now_ns()
    assert.are.equal("recomputed", c:get_or_compute("k", 60, function() return "recomputed" end))
    local secs = (core.now_ns() - t0) / 1e9
    assert.is_true(secs < 2, ("waited %.1f s for a dead holder's lock"):format(secs))
    assert.are.equal("recomputed", c:get("k")) -- and stored: the lock was ours
    os.remove(pidfile)
    os.remove(script)
    c:clear()
  end)

  it("refreshes a hot key early, once, while serving the cached value (XFetch)", function()
    local c = new_cache({ beta = 1e7 })
    local computes = 0
    local fn = function()
      computes = computes + 1
      core.sleep(0.05)
      return computes
    end
    assert.are.equal(1, c:get_or_compute("hot", 2, fn))
    -- compute took ~50 ms; with so large a beta the refresh is due at once
    local v = c:get_or_compute("hot", 2, fn)
    assert.are.equal(2, v)
    assert.are.equal(1, c:stats().process.early_refreshes)
    -- while another process holds the refresh lock, the cached value is served
    local name = c.prefix .. "hot@0"
    redis_cli(("SET %slock:%s other PX 5000"):format(c.prefix, name))
    assert.are.equal(2, c:get_or_compute("hot", 2, fn))
    assert.are.equal(2, computes)
    c:clear()
  end)
end)

describe("cache coherence between processes", function()
  it("never reads an older value after another process's set returned", function()
    -- One process sets increasing values; after each set returns, it tells
    -- the other (through a Redis list) which value it set; the other then
    -- reads and must see that value or a newer one, never an older.
    local prefix = fresh_prefix()
    local code = [[
local c = require("quarry").cache
local role, rounds = arg[1], 3000
if role == "1" then
  for i = 1, rounds do
    assert(c:set("coherent", i, 60))
    c.conn:call("RPUSH", c.prefix .. "said", i)
  end
  print("done")
else
  local stale = 0
  for _ = 1, rounds do
    local r = c.conn:call("BLPOP", c.prefix .. "said", 5)
    if not r then break end
    local v = c:get("coherent")
    if not v or v < tonumber(r[2]) then stale = stale + 1 end
  end
  print("stale " .. stale)
end
]]
    local outs = processes(2, code, { QUARRY_CACHE_PREFIX = prefix, QUARRY_CACHE_TIMEOUT = "5000" })
    assert.are.equal("done\n", outs[1])
    assert.are.equal("stale 0\n", outs[2])
  end)

  it("with share, hands back the table it decoded only while Redis holds the very same bytes", function()
    local c = new_cache()
    local share = { share = true }
    local computes = 0
    local function fn() computes = computes + 1 return { rows = { { v = "1." .. computes } } } end
    local a = c:get_or_compute("shared", 60, fn, share)
    local b = c:get_or_compute("shared", 60, fn, share)
    local d = c:get_or_compute("shared", 60, fn, share)
    assert.are.equal(1, computes)
    assert.are.equal(b, d) -- decoded once: the same table
    assert.are.same(a, b)
    assert.are_not.equal(c:get_or_compute("shared", 60, fn), c:get_or_compute("shared", 60, fn)) -- not without share
    -- another process stores new bytes under the same key: the new value, never the kept table
    local other = new_cache()
    other.prefix = c.prefix
    assert.is_true(other:set("shared", { rows = { { v = "2.0" } } }, 60))
    local e = c:get_or_compute("shared", 60, fn, share)
    assert.are_not.equal(b, e)
    assert.are.equal("2.0", e.rows[1].v)
    -- invalidated: computed again, not the kept table
    c:invalidate("shared")
    local f = c:get_or_compute("shared", 60, fn, share)
    assert.are.equal(2, computes)
    assert.are.equal("1.2", f.rows[1].v)
    c:clear()
  end)

  it("makes a value stale in every process once another process invalidates it", function()
    local prefix = fresh_prefix()
    local code = [[
local quarry = require "quarry"
local c = quarry.cache
local version = 0
local function fn() version = version + 1 return "v" .. version end
local key = "monthly_mining:2024-03:S9:all"
local a = c:get_or_compute(key, 600, fn)
local b = c:get_or_compute(key, 600, fn)
io.write(a, " ", b, "\n")
os.execute(arg[2] .. " cache invalidate 'monthly_mining:2024-03:*' >/dev/null")
io.write(c:get_or_compute(key, 600, fn), "\n")
]]
    local script = h.write(h.tmpname(".lua"), code)
    local quarry_cmd = ("QUARRY_CACHE_PREFIX=%s %s"):format(prefix, h.shell_quote(h.bin))
    local out, err, rc = h.quarry(("run %s x %s"):format(script, h.shell_quote(quarry_cmd)),
      { QUARRY_CACHE_PREFIX = prefix })
    os.remove(script)
    assert.are.equal(0, rc, err)
    assert.are.equal("v1 v1\nv2\n", out)
  end)
end)

describe("cache semantics users porting code expect", function()
  local cjson = require "cjson"

  it("does not cache a compute that returns nil, err, and passes the error on", function()
    local c = new_cache()
    local calls = 0
    local function failing() calls = calls + 1 return nil, "upstream down" end
    for _ = 1, 2 do
      local v, err = c:get_or_compute("fails", 60, failing)
      assert.is_nil(v)
      assert.are.equal("upstream down", err)
    end
    assert.are.equal(2, calls)
    assert.are.equal(0, #c:keys("fails@*"))
    c:clear()
  end)

  it("caches a value holding JSON null", function()
    local c = new_cache()
    local calls = 0
    local function fn() calls = calls + 1 return { x = cjson.null, list = { 1, cjson.null } } end
    local a = c:get_or_compute("nulls", 60, fn)
    local b = c:get_or_compute("nulls", 60, fn)
    assert.are.equal(1, calls)
    assert.are.equal(cjson.null, b.x)
    assert.are.equal(cjson.null, b.list[2])
    assert.are.same(a, b)
    c:clear()
  end)

  it("returns the same values with the cache on, off and down", function()
    local function fn() return "value", "ignored extra" end
    local on = new_cache()
    local off = new_cache({ enabled = false })
    local down = new_cache({ url = "redis://127.0.0.1:1", connect_timeout_ms = 50, command_timeout_ms = 50 })
    for _, c in ipairs({ on, off, down }) do
      for _ = 1, 2 do assert.are.same({ "value" }, { c:get_or_compute("same", 60, fn) }) end
      assert.are.same({ nil, "why" }, { c:get_or_compute("none", 60, function() return nil, "why" end) })
    end
    on:clear()
  end)

  it("honours sub-second TTLs and refuses what is not a TTL", function()
    local c = new_cache()
    c:set("brief", "x", 0.2)
    local keys = c:keys("brief@*")
    assert.is_true(keys[1].ttl > 0 and keys[1].ttl <= 0.2, keys[1].ttl)
    core.sleep(0.3)
    assert.is_nil(c:get("brief"))
    for _, bad in ipairs({ 0, -1, 0.0001, 0 / 0, math.huge }) do
      assert.has_error(function() c:set("bad", 1, bad) end)
    end
    c:clear()
  end)

  it("makes a script's value stale when quarry writes a date it depends on", function()
    local c = new_cache({ log = false })
    local rules = require "quarry.rules"
    local computed = 0
    local function fn() computed = computed + 1 return computed end
    local march = { depends = { from = "2024-03-01", to = "2024-03-31" } }
    local year = { depends = { years = { "2024" } } }
    local day = { depends = { dates = { "2024-05-02" } } }
    assert.are.equal(1, c:get_or_compute("my:analysis", 60, fn, march))
    assert.are.equal(2, c:get_or_compute("my:yearly", 60, fn, year))
    assert.are.equal(3, c:get_or_compute("my:day", 60, fn, day))
    assert.are.equal(4, c:get_or_compute("my:all", 60, fn, { depends = "all" }))
    rules.apply(c, "curtailment_records", { "2024-03-17" })
    assert.are.equal(5, c:get_or_compute("my:analysis", 60, fn, march))  -- stale: recomputed
    assert.are.equal(6, c:get_or_compute("my:yearly", 60, fn, year))
    assert.are.equal(3, c:get_or_compute("my:day", 60, fn, day))         -- another date: kept
    assert.are.equal(7, c:get_or_compute("my:all", 60, fn, { depends = "all" }))
    assert.has_error(function() c:get_or_compute("x", 60, fn, { depends = { dates = { "2024-02-30" } } }) end)
    c:clear()
  end)
end)

describe("cache TTLs and invalidation", function()
  it("sends the TTL tiers to Redis", function()
    local c = new_cache()
    assert.are.same({ SHORT = 60, MEDIUM = 300, LONG = 3600, VERY_LONG = 86400 }, c.TTL)
    for tier, secs in pairs(c.TTL) do
      c:get_or_compute("ttl:" .. tier, secs, function() return tier end)
      local keys = c:keys("ttl:" .. tier .. "@*")
      assert.are.equal(1, #keys)
      assert.is_true(keys[1].ttl <= secs and keys[1].ttl > secs - 5, tier)
    end
    c:clear()
  end)

  local function fill(c)
    local keys = {
      "daily_mining:2024-03-01:S19J_PRO:all", "daily_mining:2024-03-01:S9:T_SGRWO-1",
      "daily_mining:2024-03-02:S19J_PRO:all", "monthly_mining:2024-03:S19J_PRO:all",
      "monthly_mining:2024-04:S19J_PRO:all", "yearly_mining:2024:S19J_PRO:all",
      "yearly_mining:2023:S19J_PRO:all", "other:thing",
    }
    for _, k in ipairs(keys) do c:set(k, k, 600) end
    return keys
  end

  local function cached(c, keys)
    local out = {}
    for _, k in ipairs(keys) do if c:get(k) == k then out[#out + 1] = k end end
    return out
  end

  it("applies the rules of a date: that day, its month, quarter and year and nothing else", function()
    local c = new_cache()
    local keys = fill(c)
    for _, k in ipairs({ "quarterly_mining:2024-Q1:farms:all", "quarterly_mining:2024-Q2:farms:all" }) do
      c:set(k, k, 600)
      keys[#keys + 1] = k
    end
    local applied = require("quarry.rules").invalidate(c, "curtailment_records", { "2024-03-01" })
    assert.are.same({ "daily_mining:2024-03-01:*", "monthly_mining:2024-03:*", "quarterly_mining:2024-Q1:*",
      "yearly_mining:2024:*", "data:2024-03-01:*", "data:2024-03:*", "data:2024:*", "data:all:*" }, applied)
    assert.are.same({ "daily_mining:2024-03-02:S19J_PRO:all", "monthly_mining:2024-04:S19J_PRO:all",
      "yearly_mining:2023:S19J_PRO:all", "other:thing", "quarterly_mining:2024-Q2:farms:all" }, cached(c, keys))
    c:clear()
  end)

  it("invalidates a group in one command however many keys it holds", function()
    local c = new_cache()
    for i = 1, 300 do c:set(("monthly_mining:2024-05:M%d:all"):format(i), i, 600) end
    c:set("monthly_mining:2024-06:M1:all", 1, 600)
    assert.are.equal("group", c:invalidate("monthly_mining:2024-05:*"))
    assert.is_nil(c:get("monthly_mining:2024-05:M7:all"))
    assert.are.equal(1, c:get("monthly_mining:2024-06:M1:all"))
    assert.are.equal(1, #c:keys("monthly_mining:*"))
    c:clear()
  end)

  it("invalidates exact keys and glob patterns", function()
    local c = new_cache()
    local keys = fill(c)
    assert.are.equal(1, c:invalidate("other:thing"))
    assert.are.equal(2, c:invalidate("daily_mining:2024-03-0[12]:S19J_PRO:*"))
    assert.are.same({ "daily_mining:2024-03-01:S9:T_SGRWO-1", "monthly_mining:2024-03:S19J_PRO:all",
      "monthly_mining:2024-04:S19J_PRO:all", "yearly_mining:2024:S19J_PRO:all",
      "yearly_mining:2023:S19J_PRO:all" }, cached(c, keys))
    assert.is_true(c:clear() > 0)
    assert.are.same({}, cached(c, keys))
  end)

end)

describe("cache failing open", function()
  it("computes through a Redis outage without waiting, warns once, and caches again after", function()
    local code = [[
local quarry = require "quarry"
local core = require "quarry.core"
local c = quarry.cache
local computes = 0
local function fn() computes = computes + 1 return "v" end
c:get_or_compute("k", 60, fn)
c:get_or_compute("k", 60, fn)
print("before", computes)
os.execute(arg[2] .. " stop-redis")
local t0 = core.now_ns()
for _ = 1, 50 do assert(c:get_or_compute("k", 60, fn) == "v") end
print("down", computes, (core.now_ns() - t0) / 1e6 < 300)
os.execute(arg[2] .. " start-redis")
core.sleep(5.5) -- past the longest backoff
c:get_or_compute("k", 60, fn)
local n = computes
c:get_or_compute("k", 60, fn)
print("after", computes - n, c:stats().process.errors > 0)
]]
    local script = h.write(h.tmpname(".lua"), code)
    local services = ("QUARRY_HOME=%s %s/scripts/services.sh"):format(h.shell_quote(h.home), h.shell_quote(h.root))
    local out, err, code_ = h.quarry(("run %s x %s"):format(script, h.shell_quote(services)),
      { QUARRY_CACHE_PREFIX = fresh_prefix() })
    os.remove(script)
    h.services("up")
    assert.are.equal(0, code_, err)
    assert.matches("before\t1\n", out, 1, true)
    assert.matches("down\t51\ttrue\n", out, 1, true)
    assert.matches("after\t0\ttrue\n", out, 1, true)
    local _, warnings = err:gsub("unreachable", "")
    assert.are.equal(1, warnings, err)
    assert.matches("is back", err)
  end)

  it("computes every time with QUARRY_CACHE=off", function()
    local code = [[
local c = require("quarry").cache
local n = 0
for _ = 1, 3 do c:get_or_compute("k", 60, function() n = n + 1 return n end) end
print(n, c:get("k"))
]]
    assert.are.equal("3\tnil\n", processes(1, code, { QUARRY_CACHE = "off" })[1])
  end)
end)

describe("Redis calls in tasks (quarry.parallel, quarry serve)", function()
  local parallel = require("quarry").parallel
  local function conn(timeout_ms) return core.cache_new({ url = h.urls().REDIS_URL, command_timeout_ms = timeout_ms }) end

  it("yield while Redis answers: another task runs meanwhile", function()
    -- BLPOP waits in Redis until another client pushes; a blocking call
    -- would hold the process, so the task that pushes could never run.
    local c = conn(3000)
    local list = fresh_prefix() .. "list"
    local popped, pushed = parallel(
      function() return c:call("BLPOP", list, 2) end,
      function()
        core.sleep(0.05)
        return redis_cli("RPUSH " .. list .. " hello")
      end)
    assert.are.equal("1", pushed)
    assert.are.same({ list, "hello" }, popped)
    c:close()
  end)

  it("many tasks on the one connection each get their own replies, calls and pipelines alike", function()
    local c = conn()
    local p = fresh_prefix()
    local fns = {}
    for i = 1, 40 do
      fns[i] = function()
        assert(c:call("SET", p .. i, "v" .. i))
        core.sleep((i % 3) * 0.001)
        local r = assert(c:pipeline({ { "GET", p .. i }, { "STRLEN", p .. i }, { "GET", p .. "none" } }))
        return { assert(c:call("GET", p .. i)), r[1], r[2], r[3] }
      end
    end
    local got = { parallel(table.unpack(fns)) }
    for i = 1, 40 do assert.are.same({ "v" .. i, "v" .. i, #("v" .. i), false }, got[i]) end
    -- an error reply is the caller's alone
    local bad, good = parallel(function() return { c:call("INCR", p .. 1) } end,
      function() return c:call("GET", p .. 2) end)
    assert.is_nil(bad[1])
    assert.are.equal("redis", bad[2].code)
    assert.are.equal("v2", good)
    c:close()
  end)

  it("a task stopped while its reply is on the way leaves it to no one else", function()
    local c = conn(3000)
    local p = fresh_prefix()
    assert(c:call("SET", p .. "mine", "mine"))
    local ok, err = pcall(parallel,
      function() return c:call("BLPOP", p .. "empty", 0.3) end, -- answered (nil) after the stop
      function() core.sleep(0.05) error("boom", 0) end)
    assert.is_false(ok)
    assert.are.equal("boom", err)
    -- the next task's command is queued behind the abandoned one: it must
    -- get its own reply, not the BLPOP's
    assert.are.equal("mine", (parallel(function() return c:call("GET", p .. "mine") end)))
    c:close()
  end)

  it("a task stopped while computing releases its lock: the next caller computes at once", function()
    local c = new_cache({ lock_ms = 60000 })
    local ok = pcall(parallel,
      function() return c:get_or_compute("held", 60, function() core.sleep(10) return "never" end) end,
      function() core.sleep(0.1) error("stop", 0) end)
    assert.is_false(ok)
    assert.are.equal("", redis_cli("KEYS '" .. c.prefix .. "lock:*'"))
    local t0 = core.now_ns()
    assert.are.equal("now", c:get_or_compute("held", 60, function() return "now" end))
    assert.is_true((core.now_ns() - t0) < 5e9, "waited for a lock no one held")
  end)

  it("Redis paused: the call fails soft at its deadline while other tasks go on, and recovers", function()
    local c = core.cache_new({ url = h.urls().REDIS_URL, command_timeout_ms = 200, backoff_max_ms = 200 })
    local p = fresh_prefix()
    assert(c:call("SET", p .. "k", "v"))
    local db = h.db()
    local order = {}
    redis_cli("CLIENT PAUSE 700 ALL")
    local r, q = parallel(
      function()
        local v, e = c:call("GET", p .. "k")
        order[#order + 1] = "redis"
        return { v, e }
      end,
      function()
        local row = db:query_one("SELECT 42 AS x")
        order[#order + 1] = "db"
        return row.x
      end)
    assert.are.same({ "db", "redis" }, order)
    assert.are.equal(42, q)
    assert.is_nil(r[1])
    assert.are.equal("connection", r[2].code)
    assert.is_false(c:stats().up)
    h.sleep(0.8)
    local v
    for _ = 1, 20 do -- the backoff passes; the connection is made again
      v = parallel(function() return c:call("GET", p .. "k") end)
      if v then break end
      h.sleep(0.05)
    end
    assert.are.equal("v", v)
    assert.is_true(c:stats().up)
    db:close()
    c:close()
  end)
end)

describe("quarry cache commands", function()
  it("invalidate --date applies the rules; bad dates exit 2", function()
    local env = { QUARRY_CACHE_PREFIX = fresh_prefix() }
    local out, err, code = h.quarry("cache invalidate --date 2024-03-01", env)
    assert.are.equal(0, code, err)
    assert.are.equal("invalidated daily_mining:2024-03-01:*\ninvalidated monthly_mining:2024-03:*\n" ..
      "invalidated quarterly_mining:2024-Q1:*\ninvalidated yearly_mining:2024:*\n" ..
      "invalidated data:2024-03-01:*\ninvalidated data:2024-03:*\n" ..
      "invalidated data:2024:*\ninvalidated data:all:*\n", out)
    for _, bad in ipairs({ "2024-13-01", "2024-02-30", "yesterday", "2024-03-01'; FLUSHALL" }) do
      local _
      _, err, code = h.quarry("cache invalidate --date " .. h.shell_quote(bad), env)
      assert.are.equal(2, code, bad)
      assert.matches("not a date", err)
    end
    code = select(3, h.quarry("cache invalidate", env))
    assert.are.equal(2, code)
    out, err, code = h.quarry("cache invalidate ''", env) -- an empty pattern: bad input, said in one line
    assert.are.equal("", out)
    assert.are.equal(2, code)
    assert.are.equal("quarry: cache invalidate needs a PATTERN (or --date D)\n", err)
  end)

  it("lists keys, shows stats across processes, and clears", function()
    local env = { QUARRY_CACHE_PREFIX = fresh_prefix() }
    processes(2, [[
local c = require("quarry").cache
c:get_or_compute("monthly_mining:2024-03:S9:all", 3600, function() return string.rep("x", 100) end)
]], env)
    local out, err, code = h.quarry("cache keys", env)
    assert.are.equal(0, code, err)
    assert.matches("^monthly_mining:2024%-03:S9:all ", out) -- the key as `cache invalidate` takes it
    out, err, code = h.quarry("cache stats", env)
    assert.are.equal(0, code, err)
    assert.matches("hits%s+1\n", out)
    assert.matches("misses%s+1\n", out)
    assert.matches("computes%s+1\n", out)
    assert.matches("keys%s+1\n", out)
    local _
    out, _, code = h.quarry("cache invalidate 'monthly_mining:2024-03:*'", env)
    assert.are.equal(0, code)
    assert.matches("invalidated group", out)
    out = h.quarry("cache keys", env)
    assert.are.equal("", out)
    out, _, code = h.quarry("cache clear", env)
    assert.are.equal(0, code)
    assert.matches("removed %d+ key", out)
  end)

  it("exits 3 when Redis is unreachable", function()
    local _, err, code = h.quarry("cache stats", { REDIS_URL = "redis://:pw@127.0.0.1:1/0" })
    assert.are.equal(3, code)
    assert.matches("127.0.0.1:1", err)
    assert.not_matches("pw@", err)
  end)

  it("fails a pipeline when Redis refuses any one of its commands", function()
    local c = new_cache()
    c.conn:call("SET", c.prefix .. "str", "x")
    local r, err = c.conn:pipeline({ { "INCR", c.prefix .. "n" }, { "INCR", c.prefix .. "str" }, { "GET", c.prefix .. "n" } })
    assert.is_nil(r)
    assert.are.equal("redis", err.code)
    assert.matches("not an integer", err.message)
    c:clear()
  end)

  it("keeps a pipeline's replies alive while their Lua values are built, however often the GC runs", function()
    local c = new_cache()
    local big = ("x"):rep(4096)
    local cmds = {}
    for i = 1, 200 do cmds[i] = { "SET", c.prefix .. "p" .. i, big .. i } end
    assert.is_table(c.conn:pipeline(cmds))
    for i = 1, 200 do cmds[i] = { "GET", c.prefix .. "p" .. i } end
    collectgarbage("incremental", 0, 1000) -- a collection at every allocation, as near as Lua gets
    local ok, replies = pcall(c.conn.pipeline, c.conn, cmds)
    collectgarbage("incremental", 200, 100)
    assert.is_true(ok, replies)
    for i = 1, 200 do assert.are.equal(big .. i, replies[i]) end
    c:clear()
  end)
end)
