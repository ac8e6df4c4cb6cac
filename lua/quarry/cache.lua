--- quarry.cache: one cache shared by every quarry process, in Redis.
--
--   cache:get_or_compute(key, ttl, fn [, opts])   the value, computed at most once at a time
--   cache:get(key [, opts])  cache:set(key, value, ttl [, opts])
--   cache:invalidate(pattern)  cache:clear()  cache:stats()   cache.TTL
--   opts.depends: the data a value came from ({dates=}, {from=, to=},
--   {months=}, {years=} or "all"), so every quarry write to it makes it stale.
--   opts.share: the caller will not change the value it gets, so a hit
--   whose bytes are the very ones this process decoded last time for that
--   name returns that same table (no decoding; quarry serve renders it once).
--
-- Keys are readable with redis-cli: <prefix><key>@<generations>, e.g.
-- quarry:monthly_mining:2024-03:S19J_PRO:all@0.0.2.0. Every `:`-separated
-- prefix of a key is a group with a generation counter (<prefix>gen:<group>);
-- the generations of a key's groups (and of the groups it depends on, and
-- the cache's epoch) are part of its stored name, so invalidating
-- "monthly_mining:2024-03:*" is one INCR, however many keys there are:
-- readers compute the new name and miss. Old names expire by TTL.
--
-- Every read is one script in Redis that computes the current name and reads
-- the value atomically, so after one process's set or invalidate returns, no
-- other process reads the older value. Nothing is kept in the process
-- (opts.share keeps a decoded copy, used only when Redis answers with the
-- same bytes again).
--
-- No stale value after a fault: the invalidations a write needs are logged
-- in PostgreSQL with the write (lua/quarry/stale.lua). Redis keeps the last
-- logged seq it has applied (<prefix>applied); with a log (opts.log), every
-- read passes the log's latest seq to the script, which refuses to answer
-- while Redis is behind, and the cache applies the missing entries first. A
-- Redis that lost the mark, or restarted from a snapshot older than the
-- log's pruned entries, starts a new epoch: every older value is left behind.
--
-- Values carry their compute time, so a hot key is refreshed early by one
-- process with a probability that rises towards expiry (XFetch, Vattani et
-- al., VLDB 2015) while the others are served. A missing key is computed by
-- one process holding a lock (SET NX PX); the others wait for its value, and
-- a holder that died blocks nobody past the lock's expiry.
--
-- The cache never fails a caller and never serves what it cannot prove
-- current: with Redis (or the log) down, slow or full, every call computes
-- at once, uncached, counts an error and logs one warning per outage.
local core = require "quarry.core"
local log = require "quarry.log"

local M = {}

M.TTL = { SHORT = 60, MEDIUM = 300, LONG = 3600, VERY_LONG = 86400 }

-- envelope: magic, compute time (ms), expiry (wall clock ms), codec payload
local MAGIC = "QRC2"
local HEADER = "<c4I4i8"
local HEADER_LEN = string.packsize(HEADER)

-- Runs in Redis: the current name of a key and its value, in one round trip.
-- ARGV: prefix, key, want_lock (0/1), lock token, lock ms, need (the log's
-- latest seq, or -1 without a log), with_value (0/1), groups...
-- Returns {name, value} (with_value 0: {name, 1}, the caller having sent a
-- GET of the name it expects in the same pipeline, which spares copying the
-- value through the script) | {name, false, -2, locked 1/0} on a miss |
-- {false, false, applied or -1} when Redis has not applied the log up to need.
local LOOKUP = [[
local prefix, key = ARGV[1], ARGV[2]
local need = tonumber(ARGV[6])
if need >= 0 then
  local applied = tonumber(redis.call('GET', prefix .. 'applied'))
  if not applied or applied < need then return {false, false, applied or -1} end
end
local gens = {redis.call('GET', prefix .. 'epoch') or '0'}
for i = 8, #ARGV do gens[#gens + 1] = redis.call('GET', prefix .. 'gen:' .. ARGV[i]) or '0' end
local name = prefix .. key .. '@' .. table.concat(gens, '.')
if ARGV[7] == '0' then
  if redis.call('EXISTS', name) == 1 then return {name, 1} end
else
  local v = redis.call('GET', name)
  if v then return {name, v} end
end
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

-- Apply logged invalidations atomically, once: only if the applied mark is
-- still what the caller read (ARGV[2], '' for none), start a new epoch
-- (ARGV[4] = '1': one never used before, from the server's clock) or bump
-- the listed groups' generations, and set the mark to ARGV[3]. 0 when
-- another process got there first.
-- ARGV: prefix, expected mark, new mark, new epoch, groups...
local CATCH_UP = [[
local prefix = ARGV[1]
if (redis.call('GET', prefix .. 'applied') or '') ~= ARGV[2] then return 0 end
if ARGV[4] == '1' then
  local t = redis.call('TIME')
  redis.call('SET', prefix .. 'epoch', t[1] .. string.format('%06d', tonumber(t[2])))
end
for i = 5, #ARGV do redis.call('INCR', prefix .. 'gen:' .. ARGV[i]) end
redis.call('SET', prefix .. 'applied', ARGV[3])
return 1
]]

local Cache = {}
Cache.__index = Cache
Cache.TTL = M.TTL -- so scripts can write cache.TTL.MEDIUM

local COUNTERS = { "hits", "misses", "computes", "lock_waits", "early_refreshes", "errors", "sets", "catch_ups" }

--- A cache. opts: url (Redis URL), enabled (false = compute every time),
-- prefix ("quarry:"), lock_ms (30000: longest compute a lock covers),
-- wait_ms (how long waiters wait for another process's value; = lock_ms),
-- beta (XFetch eagerness, 1.0), timeouts (connect/command ms), log (the
-- invalidation log, quarry.stale.log(db): without one, only invalidations
-- that reached Redis count).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    prefix = opts.prefix or "quarry:",
    lock_ms = opts.lock_ms or 30000,
    beta = opts.beta or 1.0,
    enabled = opts.enabled ~= false,
    log = opts.log,
    warned = {},
    hints = {}, hint_count = 0, -- key -> the stored name it had last (a hint, checked on every read)
    local_stats = {},
    pending = {},
    unreleased = {}, -- lock keys whose release failed: tried again before the next lookup
    shared = {}, shared_bytes = 0, -- name -> {raw=, value=, ...}: opts.share's decoded values
    last_flush = core.now_ns(),
  }, Cache)
  self.wait_ms = opts.wait_ms or self.lock_ms
  for _, k in ipairs(COUNTERS) do self.local_stats[k], self.pending[k] = 0, 0 end
  if self.enabled then
    self.conn = core.cache_new({ url = opts.url, connect_timeout_ms = opts.connect_timeout_ms,
                                 command_timeout_ms = opts.command_timeout_ms })
  end
  self.token = M.holder_token()
  return self
end

-- ---- who holds a compute lock ----
-- A lock's value says who took it: "q1 HOST PID START RANDOM", HOST being
-- this boot of this machine and its pid namespace, START the process's
-- start time. A waiter on the same HOST can then tell a holder that died
-- mid-compute (kill -9, out of memory) from one still at work, and take
-- the lock over at once instead of waiting lock_ms for it to expire.
-- Holders elsewhere are waited for as before.

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local host_id
local function host()
  if host_id == nil then
    local boot = (read_file("/proc/sys/kernel/random/boot_id") or ""):match("^%s*(%S+)")
    local ns = core.pid_namespace()
    host_id = boot and ns and (boot .. "/" .. ns:gsub("%s", "")) or false
  end
  return host_id
end

-- The start time of process pid (clock ticks since boot), nil if there is
-- none or it has died (a zombie not yet reaped).
local function started(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  -- after "pid (comm)": state is field 3, starttime field 22
  local rest = stat and stat:match("%) (.*)$")
  if not rest then return nil end
  local i = 2
  for field in rest:gmatch("%S+") do
    i = i + 1
    if i == 3 and (field == "Z" or field == "X") then return nil end
    if i == 22 then return field end
  end
  return nil
end

--- This process's lock token.
function M.holder_token()
  local pid = core.getpid()
  return ("q1 %s %d %s %x%x"):format(host() or "-", pid, started(pid) or "-",
    math.random(0, 0x7fffffff), core.now_ns() & 0x7fffffff)
end

--- Whether the lock token names a process of this host that is gone.
function M.holder_gone(token)
  local h, pid, start = tostring(token):match("^q1 (%S+) (%d+) (%S+) %S+$")
  if not h or h == "-" or start == "-" or h ~= host() then return false end
  return started(pid) ~= start
end

local function count(self, what, n)
  n = n or 1
  self.local_stats[what] = self.local_stats[what] + n
  self.pending[what] = self.pending[what] + n
end

local function warn_once(self, what, msg, context)
  if self.warned[what] then return end
  self.warned[what] = true
  log.warn(msg, { module = "cache", context = context })
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

local function check_ttl(ttl)
  if type(ttl) ~= "number" or ttl ~= ttl or ttl < 0.001 or ttl == math.huge then
    error("cache ttl must be a number of seconds, at least 0.001", 3)
  end
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

local function redis_failed(self, what, err)
  count(self, "errors")
  if err and err.code == "redis" then
    warn_once(self, "redis:" .. what, ("cache %s failed: %s"):format(what, tostring(err)))
  end
  return nil
end

local function has_glob(s) return s:find("[%*%?%[\\]") ~= nil end

-- ---- catching up with the invalidation log ----

-- The log's latest seq: -1 without a log, nil when it cannot be read.
local function need_of(self)
  if not self.log then return -1 end
  local ok, latest = pcall(self.log.latest, self.log)
  if ok then
    self.warned.log = nil
    return latest
  end
  count(self, "errors")
  warn_once(self, "log", "cache not used: the invalidation log in PostgreSQL cannot be read: " .. tostring(latest))
  return nil
end

--- Bring Redis up to the log: apply every entry after Redis's applied mark,
-- then raise the mark, in one script (so concurrent catch-ups apply once).
-- True and the mark when Redis is current; false when it could not be made
-- so (then nothing cached may be trusted).
function Cache:catch_up()
  if not self.enabled then return false end
  if not self.log then return true end
  local mark, err = self.conn:call("GET", self.prefix .. "applied")
  if mark == nil and err then return redis_failed(self, "catch-up", err) and false end
  local applied = tonumber(mark)
  local ok, rows, pruned = pcall(self.log.since, self.log, applied or 0)
  if not ok then
    count(self, "errors")
    warn_once(self, "log", "cache not used: the invalidation log in PostgreSQL cannot be read: " .. tostring(rows))
    return false
  end
  local top, bump, groups = applied or 0, "0", {}
  for _, row in ipairs(rows) do top = math.max(top, row.seq) end
  if applied == nil or applied < pruned then
    -- A namespace new to this log, or one that lost its mark (deleted,
    -- evicted, flushed) while it may still hold values, or older than what
    -- the log still holds: what it has cannot be checked entry by entry,
    -- so a new epoch leaves all of it behind.
    bump = "1"
  else
    for _, row in ipairs(rows) do
      for _, p in ipairs(row.patterns) do
        local group = p:match("^(.-):%*$")
        if p == "*" then
          bump = "1" -- everything is stale: a new epoch
        elseif group and group ~= "" and not has_glob(group) then
          groups[#groups + 1] = group
        elseif self:invalidate(p) == nil then -- a key or glob: removed now, before the mark moves
          return false
        end
      end
    end
  end
  local r, e = script(self, CATCH_UP, 0, self.prefix, mark or "", top, bump, table.unpack(groups))
  if not r then return redis_failed(self, "catch-up", e) and false end
  if r == 1 then count(self, "catch_ups") end
  return true, top
end

local HINTS_MAX = 10000

-- What this process keeps per key: the LOOKUP command, built once, and the
-- stored name the key had last (a hint, checked on every read).
local function entry_of(self, key, opts)
  local depends = opts and opts.depends
  local extra = depends ~= nil and require("quarry.rules").depends_groups(depends) or nil
  local hint_key = extra and (key .. "\0" .. table.concat(extra, "\0")) or key
  local e = self.hints[hint_key]
  if e then return e end
  local groups = M.groups(key)
  for _, g in ipairs(extra or {}) do groups[#groups + 1] = g end
  -- EVALSHA sha numkeys prefix key want_lock token lock_ms need with_value groups...
  e = { eval = { "EVALSHA", "", 0, self.prefix, key, 0, self.token, self.lock_ms, -1, 1, table.unpack(groups) } }
  if self.hint_count >= HINTS_MAX then self.hints, self.hint_count = {}, 0 end
  self.hints[hint_key], self.hint_count = e, self.hint_count + 1
  return e
end

-- One LOOKUP. When the key's last name is known, the script only says
-- whether it is still current, and a GET of it in the same pipeline brings
-- the value (sparing its copy through the script): returns the script's
-- reply, nil, the GET's. Otherwise the script returns the value itself.
local function run_lookup(self, e, use_hint, name_only)
  local cmd = e.eval
  if name_only then -- the name, and whether a value is there: no value moved
    cmd[10] = 0
    return script(self, LOOKUP, table.unpack(cmd, 3))
  end
  local sha = self.shas and self.shas[LOOKUP]
  if use_hint and e.name and sha then
    cmd[2], cmd[10] = sha, 0
    local rs, err = self.conn:pipeline(e.both)
    if rs then return rs[1], nil, rs[2] end
    if not (err and err.code == "redis" and err.message:find("^NOSCRIPT")) then return nil, err end
    self.shas[LOOKUP] = nil -- Redis restarted and forgot it: the slow way loads it again
  end
  cmd[10] = 1
  return script(self, LOOKUP, table.unpack(cmd, 3))
end

-- Redis's answer to LOOKUP for key: {name, raw value or false, nil, locked
-- (1/0)}, or nil when Redis (or the log) cannot give a current answer.
-- unchecked: the current name whatever the log says (for removing);
-- name_only: the name without the value (for storing or removing).
local function lookup(self, key, want_lock, opts, unchecked, name_only)
  local need = unchecked and -1 or need_of(self)
  if need == nil then return nil end
  local e = entry_of(self, key, opts)
  e.eval[6], e.eval[9] = want_lock and 1 or 0, need
  local use_hint = not unchecked
  for _ = 1, 4 do
    local r, err, raw = run_lookup(self, e, use_hint, name_only)
    if not r then return redis_failed(self, "lookup", err) end
    if r[1] then
      local hinted = e.name
      if r[1] ~= hinted then
        e.name = r[1]
        e.both = { e.eval, { "GET", r[1] } }
      end
      if r[2] ~= 1 or name_only then return r end
      if r[1] == hinted and raw then -- the pipelined GET read the current name
        r[2] = raw
        return r
      end
      use_hint = false -- the name moved on (or the value just expired): ask again, value and all
    elseif not self:catch_up() then
      return nil -- behind the log, and could not catch up
    end
  end
  return nil
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

-- A lock this process could not release (Redis away at that moment) is
-- released at its next lookup: a Redis restarted from a snapshot that holds
-- the lock would otherwise keep every other process waiting for a value
-- that is not coming, until the lock expires (lock_ms).
local function unlock(self, name)
  local key = self.prefix .. "lock:" .. name
  if script(self, UNLOCK, 1, key, self.token) == nil then self.unreleased[key] = true end
end

local function release_leftovers(self)
  for key in pairs(self.unreleased) do
    if script(self, UNLOCK, 1, key, self.token) == nil then return end -- still away: later
    self.unreleased[key] = nil
  end
end

-- The most bytes of stored values opts.share keeps decoded (then it starts afresh).
local SHARED_BYTES = 16 * 1024 * 1024

-- What Redis holds for key: {name=, hit=true, value=, compute_ms=, pttl=},
-- {name=, corrupt=true}, or a miss {name=, locked=} (with want_lock, whether
-- we took the compute lock); nil when Redis is unavailable or behind.
local function fetch(self, key, want_lock, opts)
  if next(self.unreleased) then release_leftovers(self) end
  local r = lookup(self, key, want_lock, opts)
  if not r then return nil end
  local name = r[1]
  if not r[2] then return { name = name, locked = r[4] == 1 } end
  local raw, share = r[2], opts and opts.share
  local seen = share and self.shared[name]
  if seen and seen.raw == raw then -- the same bytes: the same value
    return { name = name, hit = true, value = seen.value, compute_ms = seen.compute_ms,
             pttl = seen.expires - core.wall_ms() }
  end
  local ok, value, compute_ms, expires = unwrap(raw)
  if ok then
    if share then
      if self.shared_bytes + #raw > SHARED_BYTES then self.shared, self.shared_bytes = {}, 0 end
      self.shared[name] = { raw = raw, value = value, compute_ms = compute_ms, expires = expires }
      self.shared_bytes = self.shared_bytes + #raw
    end
    return { name = name, hit = true, value = value, compute_ms = compute_ms, pttl = expires - core.wall_ms() }
  end
  count(self, "errors")
  warn_once(self, name, "ignoring a corrupt or foreign value in the cache", { key = name })
  return { name = name, corrupt = true }
end

local function store(self, name, value, ttl, compute_ms)
  local ok, payload = pcall(core.encode, value)
  if not ok then
    log.warn("value not cached: " .. tostring(payload), { module = "cache", context = { key = name } })
    return false
  end
  local ms = math.max(1, math.floor(ttl * 1000 + 0.5))
  local header = string.pack(HEADER, MAGIC, compute_ms, core.wall_ms() + ms)
  local r, err = self.conn:call("SET", name, header .. payload, "PX", ms)
  if r then count(self, "sets") else redis_failed(self, "store", err) end
  return r ~= nil
end

local function lock(self, name)
  return self.conn:call("SET", self.prefix .. "lock:" .. name, self.token, "NX", "PX", self.lock_ms) ~= nil
end

-- The lock on name, if its holder is a process of this host that died:
-- released (only if it is still that holder's), so the next lookup takes it.
local function take_over_if_gone(self, name)
  local key = self.prefix .. "lock:" .. name
  local holder = self.conn:call("GET", key)
  if type(holder) == "string" and M.holder_gone(holder) and script(self, UNLOCK, 1, key, holder) == 1 then
    log.info("took over a compute lock whose holder died",
      { module = "cache", context = { key = name, holder = holder } })
  end
end

-- fn's value and error: a value of nil is an answer not to keep.
local function call(self, fn)
  count(self, "computes")
  local v, err = fn()
  if v == nil then return nil, err end
  return v
end

-- Run fn, time it, and store its value under name (lock held by us, or no
-- name: then it is not stored). Returns the value, or nil and fn's error.
-- The lock goes whatever happens, also when the caller's task is stopped
-- half-way (a serve request past its time, or whose client left): others
-- waiting for the value then compute it at once instead of after lock_ms.
local function compute_and_store(self, name, ttl, fn)
  local _ <close> = name and setmetatable({}, { __close = function() unlock(self, name) end }) or nil
  local t0 = core.now_ns()
  local ok, value, ferr = pcall(call, self, fn)
  local ms = math.min((core.now_ns() - t0) // 1000000, 0xffffffff)
  if ok and value ~= nil and name ~= nil then store(self, name, value, ttl, ms) end
  if not ok then error(value, 0) end
  if value == nil then return nil, ferr end
  return value
end

-- XFetch: is an early refresh due, for a value that took compute_ms to
-- compute and expires in pttl ms?
local function early_due(self, compute_ms, pttl)
  local u = math.random()
  return pttl > 0 and compute_ms * self.beta * -math.log(u > 0 and u or 1e-12) >= pttl
end

--- The cached value of key, or fn()'s, stored for ttl seconds. fn returning
-- nil (and an error) is not cached: get_or_compute returns nil, err.
function Cache:get_or_compute(key, ttl, fn, opts)
  check_key(key)
  check_ttl(ttl)
  if type(fn) ~= "function" then error("get_or_compute needs a function", 2) end
  if not self.enabled then return call(self, fn) end
  local deadline, checked_holder
  while true do
    local rec = fetch(self, key, true, opts)
    if not rec then return call(self, fn) end -- Redis unavailable or not current: compute, uncached
    local name = rec.name
    if rec.hit then
      -- XFetch: refresh early, once, with a probability rising towards expiry.
      if early_due(self, rec.compute_ms, rec.pttl) and lock(self, name) then
        count(self, "early_refreshes")
        return compute_and_store(self, name, ttl, fn)
      end
      count(self, "hits")
      self:flush_stats_if_due()
      return rec.value
    end
    if rec.corrupt then -- overwrite it, under the lock if we can get it
      count(self, "misses")
      return compute_and_store(self, lock(self, name) and name or nil, ttl, fn)
    end
    if rec.locked then
      count(self, "misses")
      local v, err = compute_and_store(self, name, ttl, fn)
      self:flush_stats_if_due()
      return v, err
    end
    -- Another process is computing it: wait for its value.
    local now = core.now_ns()
    if not deadline then
      count(self, "lock_waits")
      deadline = now + self.wait_ms * 1000000
    elseif now > deadline then
      count(self, "misses")
      return call(self, fn) -- waited long enough: compute without caching
    end
    if now >= (checked_holder or 0) then -- a holder that died here leaves its lock: take it over
      checked_holder = now + 100000000
      take_over_if_gone(self, name)
    end
    core.sleep(0.01)
  end
end

--- The cached value of key, or nil.
function Cache:get(key, opts)
  check_key(key)
  if not self.enabled then return nil end
  local rec = fetch(self, key, false, opts)
  if rec and rec.hit then
    count(self, "hits")
    return rec.value
  end
  count(self, "misses")
  return nil
end

--- Store value under key for ttl seconds; true if stored.
function Cache:set(key, value, ttl, opts)
  check_key(key)
  check_ttl(ttl)
  if not self.enabled then return false end
  local r = lookup(self, key, false, opts, false, true)
  return r ~= nil and store(self, r[1], value, ttl, 0)
end

--- Make keys stale. "a:b:*" (a literal prefix then :*) bumps that group's
-- generation: O(1). A key without wildcards is deleted. Any other pattern
-- is found with SCAN and removed with UNLINK. Returns how many keys were
-- removed, or "group" for a generation bump; nil, err if Redis did not do it.
function Cache:invalidate(pattern)
  if type(pattern) ~= "string" or pattern == "" then error("invalidate needs a pattern", 2) end
  if not self.enabled then return 0 end
  local group = pattern:match("^(.-):%*$")
  if group and group ~= "" and not has_glob(group) then
    local r, err = self.conn:call("INCR", self.prefix .. "gen:" .. group)
    if not r then return redis_failed(self, "invalidate", err), err end
    return "group"
  end
  if not has_glob(pattern) then
    local r = lookup(self, pattern, false, nil, true, true)
    if not r then return nil, { code = "connection", message = "Redis at " .. self.conn:where() .. " unavailable" } end
    local n, err = self.conn:call("UNLINK", r[1])
    if not n then return redis_failed(self, "invalidate", err), err end
    return n
  end
  return self:scan_unlink(self.prefix .. pattern .. "@*")
end

--- UNLINK every key matching a raw Redis pattern, found with SCAN.
function Cache:scan_unlink(match)
  local cursor, removed = "0", 0
  repeat
    local r, err = self.conn:call("SCAN", cursor, "MATCH", match, "COUNT", 1000)
    if not r then return redis_failed(self, "scan", err), err end
    cursor = r[1]
    if #r[2] > 0 then
      local n, uerr = self.conn:call("UNLINK", table.unpack(r[2]))
      if not n then return redis_failed(self, "unlink", uerr), uerr end
      removed = removed + n
    end
  until cursor == "0"
  return removed
end

--- Remove every key under this cache's prefix (values, generations, locks,
-- the applied mark: the next read starts a new epoch).
function Cache:clear()
  if not self.enabled then return 0 end
  return self:scan_unlink(self.prefix .. "*")
end

local INTERNAL = { "gen:", "lock:", "stats", "applied", "epoch" }

-- The current stored name of each of page's logical keys (one pipeline).
local function live_only(self, page)
  local cmds, index = { { "GET", self.prefix .. "epoch" } }, {}
  for _, e in ipairs(page) do
    e.logical, e.gens = e.key:sub(#self.prefix + 1):match("^(.*)@([%d.]*)$")
    for _, g in ipairs(e.logical and M.groups(e.logical) or {}) do
      if not index[g] then
        cmds[#cmds + 1] = { "GET", self.prefix .. "gen:" .. g }
        index[g] = #cmds
      end
    end
  end
  local replies, err = self.conn:pipeline(cmds)
  if not replies then return nil, err end
  local out = {}
  for _, e in ipairs(page) do
    if e.logical then
      local want = { replies[1] or "0" }
      for _, g in ipairs(M.groups(e.logical)) do want[#want + 1] = replies[index[g]] or "0" end
      -- a key that depends on more groups has more generations: compare the head
      local head = table.concat(want, ".")
      if e.gens == head or e.gens:sub(1, #head + 1) == head .. "." then out[#out + 1] = e end
    end
  end
  return out
end

--- Every live value key matching pattern (superseded generations left out):
-- { {key=, logical=, ttl=, bytes=} }, sorted by key. `logical` is what
-- `cache invalidate` takes.
function Cache:keys(pattern)
  local out, cursor = {}, "0"
  repeat
    local r, err = self.conn:call("SCAN", cursor, "MATCH", self.prefix .. (pattern or "*"), "COUNT", 1000)
    if not r then return nil, err end
    cursor = r[1]
    local page = {}
    for _, k in ipairs(r[2]) do
      local rest, mine = k:sub(#self.prefix + 1), true
      for _, i in ipairs(INTERNAL) do if rest:sub(1, #i) == i then mine = false end end
      if mine then page[#page + 1] = { key = k } end
    end
    if #page > 0 then
      local perr
      page, perr = live_only(self, page)
      if not page then return nil, perr end
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

--- This process's counters ({hits=, misses=, ...}), without asking Redis.
function Cache:process_stats()
  local out = {}
  for _, k in ipairs(COUNTERS) do out[k] = self.local_stats[k] end
  return out
end

--- { process = {hits=, misses=, ...}, all = {...} (every process, from
-- Redis), keys=, bytes=, up=, where= }. all/keys/bytes are nil when Redis
-- is unavailable.
function Cache:stats()
  local s = { process = self:process_stats(), enabled = self.enabled }
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
