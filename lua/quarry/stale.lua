--- quarry.stale: the durable log of cache invalidations, in PostgreSQL.
--
-- A write that makes cached values stale records the patterns in
-- quarry_cache_invalidations in its own transaction (record), so the
-- invalidation commits or rolls back with the data. After the commit the
-- writer applies them to Redis; if Redis is down, paused or full, they stay
-- in the log, and the cache (lua/quarry/cache.lua) applies them itself
-- before it trusts any value again: Redis keeps the last seq applied, and a
-- cache that finds it behind the log's latest catches up first.
--
-- seq follows commit order: writers take a transaction-scoped advisory lock
-- before numbering, so once seq N is visible every seq below it is too.
local tasks = require "quarry.tasks"

local M = {}

-- A text[] literal of strings, every element quoted.
local function text_array(list)
  local q = {}
  for i, v in ipairs(list) do q[i] = '"' .. tostring(v):gsub('[\\"]', "\\%0") .. '"' end
  return "{" .. table.concat(q, ",") .. "}"
end

local LOCK = "SELECT pg_advisory_xact_lock(hashtext('quarry.cache_invalidations'))"

--- In the writer's transaction: log patterns (a list). Returns the seq.
-- Call it as the transaction's last statement: the lock is held to COMMIT.
function M.record(tx, patterns)
  tx:exec(LOCK)
  return tx:query_one([[
    INSERT INTO quarry_cache_invalidations (seq, patterns)
    SELECT coalesce(max(seq), 0) + 1, $1::text[] FROM quarry_cache_invalidations
    RETURNING seq]], text_array(patterns)).seq
end

local Log = {}
Log.__index = Log

--- The log as the cache reads it; db() returns the Db to read it through
-- (called on first use, so the pool opens only when the cache is used).
function M.log(db)
  return setmetatable({ db = db }, Log)
end

local LATEST = { name = "cache.log.latest", sql = [[
  SELECT coalesce(max(seq), 0) AS s, EXISTS (SELECT 1 FROM quarry_outside_writes WHERE failed IS NULL) AS outside
  FROM quarry_cache_invalidations]] }

--- The latest seq committed (0 for an empty log). Dates changed outside
-- quarry are invalidations not yet logged: they are mended first (in the
-- same round trip as the log is read, nothing is spent when there are
-- none), so what this returns covers them too. (Those a mend could not
-- bring up to date had their cached figures invalidated.)
local function read_latest(self)
  local r = self.db():query_one(LATEST)
  if not r.outside then return r.s end
  require("quarry.outside").repair(self.db())
  return self.db():query_one(LATEST).s
end

-- In a task (quarry serve, quarry.parallel), callers share reads: one who
-- asks while a read is on its way waits for the next one, sent once that
-- read is back, whose answer every caller that came meanwhile takes. It was
-- sent after each of them asked, so it sees every commit they could have
-- seen with a read of their own; under load a worker sends one read per
-- round trip, not one per request. Out of a task, each call reads.
local function shared_latest(self, sched, id)
  local batch = self.batch -- the read on its way, if any
  if batch then
    local nxt = batch.next
    if not nxt then nxt = { waiters = {} } batch.next = nxt end
    nxt.waiters[#nxt.waiters + 1] = { sched, id }
    repeat coroutine.yield("join") until nxt.done or nxt.lead == id
    if nxt.done then
      if nxt.ok then return nxt.value end
      error(nxt.value, 0)
    end
    batch = nxt -- the read before it is back: this caller sends the next one
  else
    batch = { waiters = {} }
  end
  self.batch = batch
  -- handed on however this caller ends (an error, or its task cancelled:
  -- coroutine.close runs this), so no waiter is left waiting
  local _ <close> = setmetatable({}, { __close = function()
    if self.batch == batch then self.batch = nil end
    batch.done = true
    local nxt = batch.next
    while nxt and nxt.waiters[1] do -- the first still waiting (not cancelled) sends it
      local w = table.remove(nxt.waiters, 1)
      if w[1]:joining(w[2]) then
        nxt.lead = w[2]
        self.batch = nxt
        w[1]:wake(w[2])
        break
      end
    end
    for _, w in ipairs(batch.waiters) do w[1]:wake(w[2]) end
  end })
  batch.ok, batch.value = pcall(read_latest, self)
  if batch.ok then return batch.value end
  error(batch.value, 0)
end

function Log:latest()
  local sched, id = tasks.current()
  if not sched then return read_latest(self) end
  return shared_latest(self, sched, id)
end

--- Every entry after seq `after` ({seq=, patterns={...}}, in order), and the
-- seq up to which entries have been pruned: a Redis whose applied mark is
-- below that cannot be caught up entry by entry.
function Log:since(after)
  local rows = self.db():query({ name = "cache.log.since", sql = [[
    SELECT seq, patterns FROM quarry_cache_invalidations WHERE seq > $1 ORDER BY seq]] }, after)
  local state = self.db():query_one("SELECT pruned_upto FROM quarry_cache_log_state WHERE id = 1")
  return rows, state and state.pruned_upto or 0
end

--- Drop entries applied (seq <= applied) and older than a day: the log stays
-- small, and a Redis restored from a snapshot older than that starts afresh.
-- The latest entry always stays, so numbering never starts again below
-- what Redis has applied.
function Log:prune(applied)
  local ok, err = self.db():transaction(function(tx)
    tx:exec(LOCK)
    local n = tx:exec("DELETE FROM quarry_cache_invalidations WHERE seq <= $1 AND at < now() - interval '1 day'"
      .. " AND seq < (SELECT max(seq) FROM quarry_cache_invalidations)", applied)
    if n > 0 then
      tx:exec([[UPDATE quarry_cache_log_state SET pruned_upto =
        (SELECT min(seq) - 1 FROM quarry_cache_invalidations) WHERE id = 1]])
    end
  end)
  if not ok then error(err, 0) end
end

return M
