--- quarry.write: the one path every change to dated data takes.
--
-- Ingest, seed, rollup refresh, partition retention and `miners add` all
-- change rows of settlement dates; each change must lock the dates, write,
-- recompute the bitcoin of those dates, refresh their rollups, record the
-- cache invalidation in the same transaction, commit, and then bring the
-- cache up to date. This file does those steps in that order, so no caller
-- can forget one:
--
--   local r = write.dated(db, cache, { tables = { "curtailment_records" } }, function(tx, w)
--     tx:exec("UPDATE curtailment_records SET volume = $2 WHERE id = $1", id, v)
--     w:dates({ "2024-03-01" })   -- the dates changed: locked now, finished at the end
--     return "anything"           -- dated returns it
--   end)
--
-- opts.tables: the tables fn changes (lua/quarry/defs/rules.lua says what
--   a change to each makes stale); curtailment_records changes mean the
--   bitcoin rows are recomputed too.
-- opts.bitcoin: recompute the bitcoin of the dates (default: when
--   curtailment_records is among the tables; a difficulty or miner change
--   sets it).
-- opts.everything: the change touches every cached figure (a miner model
--   added): the invalidation is one new cache epoch, not a pattern per date.
--
-- Inside an open transaction (db is a connection already in one) the steps
-- up to the record run in a savepoint and the cache is left to the caller's
-- own commit (write.after); readers catch up from the log meanwhile.
local core = require "quarry.core"
local mining = require "quarry.mining"
local outside = require "quarry.outside"
local rollup = require "quarry.rollup"
local rules = require "quarry.rules"

local M = {}

local Write = {}
Write.__index = Write

--- Declare dates fn changes (any number of calls): each is locked at once,
-- in date order, as every writer does (two writers of one date take turns).
function Write:dates(list)
  local new = {}
  for _, d in ipairs(list) do
    if not rules.check_date(d) then error(("write: not a date: '%s'"):format(tostring(d)), 2) end
    if not self.seen[d] then
      self.seen[d] = true
      new[#new + 1] = d
      self.list[#self.list + 1] = d
    end
  end
  rollup.lock_dates(self.tx, new)
end

local function has(list, name)
  for _, t in ipairs(list) do if t == name then return true end end
  return false
end

--- The steps after the write, in the write's transaction: bitcoin, rollups,
-- the durable invalidation. tables, dates as for dated; returns the bitcoin
-- rows written (0 when not recomputed).
function M.finish(tx, tables, dates, opts)
  opts = opts or {}
  local bitcoin = opts.bitcoin
  if bitcoin == nil then bitcoin = has(tables, "curtailment_records") end
  local rows = 0
  local changed = { table.unpack(tables) }
  if bitcoin and not has(changed, "historical_bitcoin_calculations") then
    changed[#changed + 1] = "historical_bitcoin_calculations"
  end
  tables = changed
  if #dates > 0 then
    if bitcoin then rows = mining.recalculate(tx, dates) end
    rollup.refresh(tx, dates, changed)
  end
  if opts.everything then
    require("quarry.stale").record(tx, { "*" })
  elseif #dates > 0 then
    rules.record(tx, tables, dates)
  end
  return rows
end

--- After the COMMIT: bring the cache up to the log (rules.apply); with
-- everything, the whole cache is stale.
function M.after(cache, tables, dates, everything)
  if everything then rules.apply_all(cache)
  elseif #dates > 0 then rules.apply(cache, tables, dates) end
end

--- Run fn(tx, w) as a dated write (see the top of this file). Returns fn's
-- result and {dates=, bitcoin_rows=}.
function M.dated(db, cache, opts, fn)
  local tables = opts.tables or error("write.dated needs opts.tables", 2)
  local nested = db.depth ~= nil and db:depth() > 0
  local result, info
  -- the longest it waits for a lock another session holds (DB_LOCK_WAIT, ms; 0: no limit)
  local lock_wait = require("quarry").settings().lock_wait_ms
  local ok, err = db:transaction(function(tx)
    if opts.long then tx:expect_long_hold() end
    -- quarry's own write: the triggers noting writes made outside quarry
    -- leave it be (lua/quarry/outside.lua). And JIT off: the planner's row
    -- estimates for a batch it has not analysed yet are far off, and
    -- JIT-compiling the write's few big statements costs more than it
    -- saves (a quarter of a second per ingest, measured).
    local was
    if nested then was = tx:query_one(outside.WRITER_ON).was
    elseif lock_wait > 0 then
      tx:exec(outside.WRITER_ON .. ", set_config('jit', 'off', true), set_config('lock_timeout', $1, true)",
        tostring(lock_wait))
    else tx:exec(outside.WRITER_ON .. ", set_config('jit', 'off', true)") end
    local w = setmetatable({ tx = tx, list = {}, seen = {} }, Write)
    result = fn(tx, w)
    table.sort(w.list)
    info = { dates = w.list, bitcoin_rows = M.finish(tx, tables, w.list, opts) }
    -- the caller's own statements after this, in its transaction, are its own
    -- (a write nested in another quarry write leaves it as it was)
    if nested then tx:exec(outside.WRITER_AS_WAS, was) end
  end)
  if not ok then
    if type(err) == "table" and err.sqlstate == "55P03" and lock_wait > 0 then -- lock_timeout
      error(core.error({ code = "query", sqlstate = err.sqlstate, message = ("gave up after %d ms waiting "
        .. "for a lock another session holds (DB_LOCK_WAIT): nothing was changed"):format(lock_wait) }), 0)
    end
    error(err, 0)
  end
  if not nested then M.after(cache, tables, info.dates, opts.everything) end
  return result, info
end

return M
