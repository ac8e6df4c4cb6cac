--- quarry.cache: one cache shared by every quarry process, in Redis.
--
--   cache:get_or_compute(key, ttl, fn)   the value, computed at most once at a time
--   cache:get(key)  cache:set(key, value, ttl)
--   cache:invalidate(pattern)  cache:clear()  cache:stats()   cache.TTL
--
-- Keys are readable with redis-cli: <prefix><key>@<generations>, e.g.
-- quarry:monthly_mining:2024-03:S19J_PRO:all@0.2.0. Every `:`-separated
-- prefix of a key is a group with a generation counter (<prefix>gen:<group>);
-- the generations of a key's groups are part of its stored name, so
-- invalidating "monthly_mining:2024-03:*" is one INCR, however many keys
-- there are: readers compute the new name and miss. Old names expire by TTL.
--
-- Values carry their compute time, so a hot key is refreshed early by one
-- process with a probability that rises towards expiry (XFetch, Vattani et
-- al., VLDB 2015) while the others are served. A missing key is computed by
-- one process holding a lock (SET NX PX); the others wait for its value, and
-- a holder that died blocks nobody past the lock's expiry.
--
-- In front of Redis each process keeps a small LRU of decoded values (the
-- first level, l1_size entries, 256 by default). Every invalidation is also
-- published on <prefix>invalidate; each process reads those messages before
-- it serves from its first level, and drops the whole first level if its
-- subscription is lost, so it never serves a value another process
-- invalidated. Values served from it are shared within the process: treat
-- cached values as read-only.
--
-- The cache never fails a caller: with Redis down or slow every call
-- computes (or misses) at once, counts an error and logs one warning per
-- outage (src/cache.c).
local core = require "quarry.core"
local log = require "quarry.log"

local M = {}

M.TTL = { SHORT = 60, MEDIUM = 300, LONG = 3600, VERY_LONG = 86400 }

-- envelope: magic, compute time (ms), expiry (wall clock ms), codec payload
local MAGIC = "QRC2"
local HEADER = "<c4I4i8"
local HEADER_LEN = string.packsize(HEADER)

-- Runs in Redis: the current name of a key and its value, in one round trip.
-- ARGV: prefix, key, want_lock (0/1), lock token, lock ms, groups...
local LOOKUP = [[
local prefix, key = ARGV[1], ARGV[2]
local gens = {}
for i = 6, #ARGV do gens[#gens + 1] = redis.call('GET', prefix .. 'gen:' .. ARGV[i]) or '0' end
local name = prefix .. key .. '@' .. table.concat(gens, '.')
local v = redis.call('GET', name)
if v then return {name, v} end
if ARGV[3] == '1' then
  local got = redis.call('SET', prefix .. 'lock:' .. name, ARGV[4], 'NX', 'PX', ARGV[5])
  return {name, false, -2, got and 1 or 0}
end
return {name, false, -2, 0}
]]

-- Release a lock only if it is still ours.
local UNLOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

local Cache = {}
Cache.__index = Cache
Cache.TTL = M.TTL -- so scripts can write cache.TTL.MEDIUM

local COUNTERS = { "hits", "l1_hits", "misses", "computes", "lock_waits", "early_refreshes", "errors", "sets" }

--- A cache. opts: url (Redis URL), enabled (false = compute every time),
-- prefix ("quarry:"), lock_ms (30000: longest compute a lock covers),
-- wait_ms (how long waiters wait for another process's value; = lock_ms),
-- beta (XFetch eagerness, 1.0), timeouts (connect/command ms).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    prefix = opts.prefix or "quarry:",
    lock_ms = opts.lock_ms or 30000,
    beta = opts.beta or 1.0,
    enabled = opts.enabled ~= false,
    warned = {},
    local_stats = {},
    pending = {},
    last_flush = core.now_ns(),
    l1_size = opts.l1_size or 256,
    l1 = {}, l1_count = 0, l1_tick = 0,
    l1_retry = 0, -- no subscription attempt before this (ns)
    gens = {},    -- group -> generation, kept current by the subscription
    names = {},   -- key -> stored name, valid while the generations are
  }, Cache)
  self.wait_ms = opts.wait_ms or self.lock_ms
  for _, k in ipairs(COUNTERS) do self.local_stats[k], self.pending[k] = 0, 0 end
  if self.enabled then
    self.conn = core.cache_new({ url = opts.url, connect_timeout_ms = opts.connect_timeout_ms,
                                 command_timeout_ms = opts.command_timeout_ms })
  end
  self.token = ("%d-%x-%x"):format(core.now_ns(), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  return self
end

-- ---- the first level ----

local function l1_flush(self)
  self.l1, self.l1_count = {}, 0
end

-- Everything held on the strength of the subscription: values, generations
-- and the stored names built from them.
local function forget_all(self)
  l1_flush(self)
  self.gens = {}
  self.names = {}
end

local function l1_drop(self, key)
  if self.l1[key] then
    self.l1[key] = nil
    self.l1_count = self.l1_count - 1
  end
end

-- Apply one invalidation message: "g\t<group>", "k\t<key>" or "*".
local function l1_apply(self, msg)
  local kind, arg = msg:match("^(%a)\t(.*)$")
  if kind == "k" then
    l1_drop(self, arg)
  elseif kind == "g" then
    self.gens[arg] = nil
    self.names = {} -- names embed generations; rebuilt on next use
    local head = arg .. ":"
    for key in pairs(self.l1) do
      if key:sub(1, #head) == head then l1_drop(self, key) end
    end
  else
    forget_all(self)
  end
end

-- Catch up with what other processes invalidated. True when what this
-- process holds (first-level values, group generations) can be trusted:
-- the subscription is live and every message so far has been applied.
local function sync(self)
  if not self.conn then return false end
  if not self.subscribed then
    local now = core.now_ns()
    if now < self.l1_retry then return false end
    self.l1_retry = now + 1000000000
    forget_all(self)
    if not self.conn:subscribe(self.prefix .. "invalidate") then return false end
    self.subscribed = true
  end
  local n, msgs = self.conn:poll()
  if n == 0 then return true end
  if n < 0 then -- subscription lost: nothing held can be trusted
    self.subscribed = false
    forget_all(self)
    return false
  end
  for _, m in ipairs(msgs) do l1_apply(self, m) end
  return true
end

local function l1_get(self, key)
  if self.l1_size <= 0 then return nil end
  local e = self.l1[key]
  if not e then return nil end
  if core.now_ns() >= e.expires then
    l1_drop(self, key)
    return nil
  end
  self.l1_tick = self.l1_tick + 1
  e.used = self.l1_tick
  return e
end

local function l1_put(self, key, value, ttl_ms, compute_ms)
  if self.l1_size <= 0 or not self.subscribed or ttl_ms <= 0 then return end
  if not self.l1[key] and self.l1_count >= self.l1_size then -- evict the least recently used
    local oldest, when = nil, math.huge
    for k, e in pairs(self.l1) do
      if e.used < when then oldest, when = k, e.used end
    end
    l1_drop(self, oldest)
  end
  if not self.l1[key] then self.l1_count = self.l1_count + 1 end
  self.l1_tick = self.l1_tick + 1
  self.l1[key] = { value = value, expires = core.now_ns() + ttl_ms * 1000000, used = self.l1_tick,
                   compute_ms = compute_ms or 0 }
end

local function publish(self, msg)
  return self.conn:call("PUBLISH", self.prefix .. "invalidate", msg)
end

local function count(self, what, n)
  n = n or 1
  self.local_stats[what] = self.local_stats[what] + n
  self.pending[what] = self.pending[what] + n
end

--- The group names of a key: each of its proper `:`-separated prefixes.
function M.groups(key)
  local groups, pos = {}, 1
  while true do
    local i = key:find(":", pos, true)
    if not i then break end
    groups[#groups + 1] = key:sub(1, i - 1)
    pos = i + 1
  end
  return groups
end

local function check_key(key)
  if type(key) ~= "string" or key == "" then error("cache key must be a non-empty string", 3) end
  if key:find("[@%s]") then error("cache key must not contain '@' or whitespace: " .. key, 3) end
end

-- Run a script by its SHA (loading it on first use, and again after a
-- Redis restart forgot it), so each call sends the arguments only.
local function script(self, body, ...)
  self.shas = self.shas or {}
  for _ = 1, 2 do
    local sha = self.shas[body]
    if not sha then
      local err
      sha, err = self.conn:call("SCRIPT", "LOAD", body)
      if not sha then return nil, err end
      self.shas[body] = sha
    end
    local r, err = self.conn:call("EVALSHA", sha, ...)
    if r ~= nil or not (err and err.code == "redis" and err.message:find("^NOSCRIPT")) then return r, err end
    self.shas[body] = nil
  end
  return nil
end

-- The stored name of key from the generations this process holds (fetching
-- the ones it lacks), or nil when Redis is unavailable. Only valid while
-- sync() says the subscription is live.
local function local_name(self, key)
  local known = self.names[key]
  if known then return known end
  local groups, missing = M.groups(key), {}
  for _, g in ipairs(groups) do
    if not self.gens[g] then missing[#missing + 1] = { "GET", self.prefix .. "gen:" .. g } end
  end
  if #missing > 0 then
    local r = self.conn:pipeline(missing)
    if not r then return nil end
    local i = 0
    for _, g in ipairs(groups) do
      if not self.gens[g] then
        i = i + 1
        self.gens[g] = r[i] or "0"
      end
    end
  end
  local gens = {}
  for i, g in ipairs(groups) do gens[i] = self.gens[g] end
  local name = self.prefix .. key .. "@" .. table.concat(gens, ".")
  self.names[key] = name
  return name
end

-- Redis's answer to LOOKUP (the script) for key: {name, raw value or false,
-- nil, locked (1/0)}, or nil when Redis is unavailable. The path used when
-- there is no live subscription to trust local generations.
local function lookup(self, key, want_lock)
  local args = { 0, self.prefix, key, want_lock and 1 or 0, self.token, self.lock_ms }
  for _, g in ipairs(M.groups(key)) do args[#args + 1] = g end
  local r, err = script(self, LOOKUP, table.unpack(args))
  if not r then
    count(self, "errors")
    if err and err.code == "redis" then log.warn("cache lookup failed: " .. tostring(err), { module = "cache" }) end
    return nil
  end
  return r
end

--- The stored name of key, or nil when Redis is unavailable.
local function name_of(self, key, trusted)
  if trusted then return local_name(self, key) end
  local r = lookup(self, key, false)
  return r and r[1]
end

-- Decode a stored envelope: true, value, compute_ms, expires_ms | nil, why.
local function unwrap(raw)
  if #raw >= HEADER_LEN then
    local magic, compute_ms, expires_ms = string.unpack(HEADER, raw)
    if magic == MAGIC then
      local value, err = core.decode(raw, HEADER_LEN + 1)
      if err == nil then return true, value, compute_ms, expires_ms end
      return nil, err
    end
  end
  return nil, "not a quarry value"
end

local function corrupt(self, name)
  count(self, "errors")
  if not self.warned[name] then
    self.warned[name] = true
    log.warn("ignoring a corrupt or foreign value in the cache", { module = "cache", context = { key = name } })
  end
end

-- What Redis holds for key: {name=, hit=true, value=, compute_ms=, pttl=},
-- {name=, corrupt=true}, or a miss {name=, locked=} (with want_lock, whether
-- we took the compute lock); nil when Redis is unavailable. With a live
-- subscription (trusted) the name comes from local generations and the
-- value from one GET decoded straight from the reply.
local function fetch(self, key, want_lock, trusted)
  local name, ok, value, compute_ms, expires, locked
  if trusted then
    name = local_name(self, key)
    if not name then
      count(self, "errors")
      return nil
    end
    ok, value, compute_ms, expires = self.conn:get_value(name, MAGIC)
    if ok == nil and type(value) == "table" then -- Redis unavailable
      count(self, "errors")
      return nil
    end
    if ok == false and want_lock then
      locked = self.conn:call("SET", self.prefix .. "lock:" .. name, self.token, "NX", "PX", self.lock_ms) ~= nil
    end
  else
    local r = lookup(self, key, want_lock)
    if not r then return nil end
    name, locked = r[1], r[4] == 1
    if r[2] then ok, value, compute_ms, expires = unwrap(r[2]) else ok = false end
  end
  if ok then
    return { name = name, hit = true, value = value, compute_ms = compute_ms, pttl = expires - core.wall_ms() }
  end
  if ok == nil then
    corrupt(self, name)
    return { name = name, corrupt = true }
  end
  return { name = name, locked = locked }
end

local function store(self, name, value, ttl, compute_ms)
  local ok, payload = pcall(core.encode, value)
  if not ok then
    log.warn("value not cached: " .. tostring(payload), { module = "cache", context = { key = name } })
    return false
  end
  local secs = math.max(1, math.tointeger(ttl) or math.ceil(ttl))
  local header = string.pack(HEADER, MAGIC, compute_ms, core.wall_ms() + secs * 1000)
  local r = self.conn:call("SET", name, header .. payload, "EX", secs)
  if r then count(self, "sets") else count(self, "errors") end
  return r ~= nil
end

local function unlock(self, name)
  script(self, UNLOCK, 1, self.prefix .. "lock:" .. name, self.token)
end

local function check_ttl(ttl)
  if type(ttl) ~= "number" or ttl <= 0 then error("cache ttl must be a positive number of seconds", 3) end
end

-- Run fn, time it, and store its value under name (lock held by us).
-- Returns the value, whether it was stored, and the compute time (ms).
local function compute_and_store(self, name, ttl, fn)
  local t0 = core.now_ns()
  local ok, value = pcall(fn)
  local ms = math.min((core.now_ns() - t0) // 1000000, 0xffffffff)
  count(self, "computes")
  local stored = ok and name ~= nil and store(self, name, value, ttl, ms)
  if name then unlock(self, name) end
  if not ok then error(value, 0) end
  return value, stored, ms
end

-- XFetch: is an early refresh due, for a value that took compute_ms to
-- compute and expires in pttl ms?
local function early_due(self, compute_ms, pttl)
  local u = math.random()
  return pttl > 0 and compute_ms * self.beta * -math.log(u > 0 and u or 1e-12) >= pttl
end

--- The cached value of key, or fn()'s, stored for ttl seconds.
function Cache:get_or_compute(key, ttl, fn)
  check_key(key)
  check_ttl(ttl)
  if type(fn) ~= "function" then error("get_or_compute needs a function", 2) end
  if not self.enabled then
    count(self, "computes")
    return fn()
  end
  local trusted = sync(self)
  local force_early = false
  if trusted then
    local e = l1_get(self, key)
    if e then
      if not early_due(self, e.compute_ms, (e.expires - core.now_ns()) / 1000000) then
        count(self, "hits")
        count(self, "l1_hits")
        return e.value
      end
      force_early = true -- refresh early: through Redis, where the lock is
    end
  end
  local deadline
  while true do
    local rec = fetch(self, key, true, trusted)
    if not rec then -- Redis unavailable: compute, uncached
      count(self, "computes")
      return fn()
    end
    local name = rec.name
    if rec.hit then
      -- XFetch: refresh early, once, with a probability rising towards expiry.
      if force_early or early_due(self, rec.compute_ms, rec.pttl) then
        local got = self.conn:call("SET", self.prefix .. "lock:" .. name, self.token, "NX", "PX", self.lock_ms)
        if got then
          count(self, "early_refreshes")
          local v, stored, ms = compute_and_store(self, name, ttl, fn)
          if stored and trusted then l1_put(self, key, v, ttl * 1000, ms) end
          return v
        end
      end
      count(self, "hits")
      if trusted then l1_put(self, key, rec.value, rec.pttl, rec.compute_ms) end
      self:flush_stats_if_due()
      return rec.value
    end
    if rec.corrupt then -- overwrite it, under the lock if we can get it
      local got = self.conn:call("SET", self.prefix .. "lock:" .. name, self.token, "NX", "PX", self.lock_ms)
      count(self, "misses")
      return (compute_and_store(self, got and name or nil, ttl, fn))
    end
    if rec.locked then
      count(self, "misses")
      local v, stored, ms = compute_and_store(self, name, ttl, fn)
      if stored and trusted then l1_put(self, key, v, ttl * 1000, ms) end
      self:flush_stats_if_due()
      return v
    end
    -- Another process is computing it: wait for its value.
    if not deadline then
      count(self, "lock_waits")
      deadline = core.now_ns() + self.wait_ms * 1000000
    elseif core.now_ns() > deadline then
      count(self, "misses")
      count(self, "computes")
      return fn() -- waited long enough: compute without caching
    end
    core.sleep(0.01)
  end
end

--- The cached value of key, or nil.
function Cache:get(key)
  check_key(key)
  if not self.enabled then return nil end
  local trusted = sync(self)
  local e = trusted and l1_get(self, key)
  if e then
    count(self, "hits")
    count(self, "l1_hits")
    return e.value
  end
  local rec = fetch(self, key, false, trusted)
  if rec and rec.hit then
    count(self, "hits")
    if trusted then l1_put(self, key, rec.value, rec.pttl, rec.compute_ms) end
    return rec.value
  end
  count(self, "misses")
  return nil
end

--- Store value under key for ttl seconds; true if stored.
function Cache:set(key, value, ttl)
  check_key(key)
  check_ttl(ttl)
  if not self.enabled then return false end
  local name = name_of(self, key, sync(self))
  local ok = name ~= nil and store(self, name, value, ttl, 0)
  if ok then
    l1_drop(self, key)
    publish(self, "k\t" .. key) -- other processes drop the value this replaces
  end
  return ok
end

local function has_glob(s) return s:find("[%*%?%[\\]") ~= nil end

--- Make keys stale. "a:b:*" (a literal prefix then :*) bumps that group's
-- generation: O(1). A key without wildcards is deleted. Any other pattern
-- is found with SCAN and removed with UNLINK. Returns how many keys were
-- removed, or "group" for a generation bump; nil, err if Redis is down.
function Cache:invalidate(pattern)
  if type(pattern) ~= "string" or pattern == "" then error("invalidate needs a pattern", 2) end
  if not self.enabled then return 0 end
  local group = pattern:match("^(.-):%*$")
  if group and group ~= "" and not has_glob(group) then
    l1_apply(self, "g\t" .. group) -- here at once; other processes by the message
    local r, err = self.conn:pipeline({ { "INCR", self.prefix .. "gen:" .. group },
                                        { "PUBLISH", self.prefix .. "invalidate", "g\t" .. group } })
    if not r then count(self, "errors") return nil, err end
    return "group"
  end
  if not has_glob(pattern) then
    l1_drop(self, pattern)
    local name = name_of(self, pattern, sync(self))
    if not name then return nil end
    local n = self.conn:call("UNLINK", name)
    publish(self, "k\t" .. pattern)
    return n
  end
  forget_all(self)
  local n, err = self:scan_unlink(self.prefix .. pattern .. "@*")
  publish(self, "*")
  return n, err
end

--- UNLINK every key matching a raw Redis pattern, found with SCAN.
function Cache:scan_unlink(match)
  local cursor, removed = "0", 0
  repeat
    local r, err = self.conn:call("SCAN", cursor, "MATCH", match, "COUNT", 1000)
    if not r then count(self, "errors") return nil, err end
    cursor = r[1]
    if #r[2] > 0 then
      local n = self.conn:call("UNLINK", table.unpack(r[2]))
      removed = removed + (n or 0)
    end
  until cursor == "0"
  return removed
end

--- Remove every key under this cache's prefix (values, generations, locks).
function Cache:clear()
  if not self.enabled then return 0 end
  forget_all(self)
  local n, err = self:scan_unlink(self.prefix .. "*")
  publish(self, "*")
  return n, err
end

-- Keep the entries of page whose generations are current (one pipeline).
local function live_only(self, page)
  local gens, cmds, index = {}, {}, {}
  for _, e in ipairs(page) do
    e.logical, e.gens = e.key:sub(#self.prefix + 1):match("^(.*)@([%d.]*)$")
    for _, g in ipairs(e.logical and M.groups(e.logical) or {}) do
      if not index[g] then
        cmds[#cmds + 1] = { "GET", self.prefix .. "gen:" .. g }
        index[g] = #cmds
      end
    end
  end
  local replies = #cmds > 0 and self.conn:pipeline(cmds) or {}
  for g, i in pairs(index) do gens[g] = replies[i] or "0" end
  local out = {}
  for _, e in ipairs(page) do
    if e.logical then
      local want = {}
      for i, g in ipairs(M.groups(e.logical)) do want[i] = gens[g] end
      if table.concat(want, ".") == e.gens then out[#out + 1] = e end
    end
  end
  return out
end

--- Every live value key matching pattern (superseded generations left out):
-- { {key=, logical=, ttl=, bytes=} }, sorted by key.
function Cache:keys(pattern)
  local out, cursor = {}, "0"
  local p = "^" .. self.prefix:gsub("%p", "%%%0")
  local internal = { p .. "gen:", p .. "lock:", p .. "stats$" }
  repeat
    local r, err = self.conn:call("SCAN", cursor, "MATCH", self.prefix .. (pattern or "*"), "COUNT", 1000)
    if not r then return nil, err end
    cursor = r[1]
    local page = {}
    for _, k in ipairs(r[2]) do
      local mine = true
      for _, i in ipairs(internal) do if k:find(i) then mine = false end end
      if mine then page[#page + 1] = { key = k } end
    end
    page = live_only(self, page)
    local cmds = {}
    for _, e in ipairs(page) do
      cmds[#cmds + 1] = { "PTTL", e.key }
      cmds[#cmds + 1] = { "STRLEN", e.key }
    end
    local replies = #cmds > 0 and self.conn:pipeline(cmds) or {}
    for i, e in ipairs(page) do
      e.ttl, e.bytes = (tonumber(replies[2 * i - 1]) or -1) / 1000, tonumber(replies[2 * i]) or 0
      e.gens = nil
      out[#out + 1] = e
    end
  until cursor == "0"
  table.sort(out, function(a, b) return a.key < b.key end)
  return out
end

--- Send this process's counters to the shared totals in Redis.
function Cache:flush_stats()
  if not self.enabled then return end
  local cmds = {}
  for _, k in ipairs(COUNTERS) do
    if self.pending[k] > 0 then cmds[#cmds + 1] = { "HINCRBY", self.prefix .. "stats", k, self.pending[k] } end
  end
  if #cmds == 0 then return end
  if self.conn:pipeline(cmds) then
    for _, k in ipairs(COUNTERS) do self.pending[k] = 0 end
  end
  self.last_flush = core.now_ns()
end

function Cache:flush_stats_if_due()
  if core.now_ns() - self.last_flush > 1000000000 then self:flush_stats() end
end

--- { process = {hits=, misses=, ...}, all = {...} (every process, from
-- Redis), keys=, bytes=, up=, where= }. all/keys/bytes are nil when Redis
-- is unavailable.
function Cache:stats()
  local s = { process = {}, enabled = self.enabled }
  for _, k in ipairs(COUNTERS) do s.process[k] = self.local_stats[k] end
  if not self.enabled then return s end
  local cs = self.conn:stats()
  s.up, s.outages, s.where = cs.up, cs.outages, self.conn:where()
  self:flush_stats()
  local all = self.conn:call("HGETALL", self.prefix .. "stats")
  if all then
    s.all = {}
    for _, k in ipairs(COUNTERS) do s.all[k] = 0 end
    for i = 1, #all, 2 do s.all[all[i]] = math.tointeger(tonumber(all[i + 1])) end
    local keys = self:keys("*") or {}
    s.keys, s.bytes = #keys, 0
    for _, k in ipairs(keys) do s.bytes = s.bytes + (k.bytes or 0) end
    s.up = true
  end
  return s
end

function Cache:close()
  if self.conn then
    self:flush_stats()
    self.conn:close()
    self.conn = nil
  end
  self.enabled = false
end

return M
