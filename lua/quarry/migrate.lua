--- quarry.migrate: apply lua/quarry/schema.lua to a database, idempotently.
-- Each migration commits on its own with its row in schema_migrations; an
-- advisory lock makes concurrent `quarry db migrate` runs take turns.
local core = require "quarry.core"
local schema = require "quarry.schema"

local M = {}

local LOCK = "SELECT pg_advisory_xact_lock(hashtext('quarry.migrate'))"
local TABLE = [[
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)]]

-- A database migrated by a newer quarry (status: M.status's list): its
-- migrations this one does not know, as a message (nil: none). Such a schema is refused for everything,
-- reads, writes and migrating alike: an older quarry's rules could write
-- rows the newer schema reads otherwise, and its migrate would rebuild the
-- rollups to its own, older declarations.
local function newer_message(status)
  local newer = {}
  for _, m in ipairs(status) do
    if m.unknown then newer[#newer + 1] = m.version end
  end
  if #newer == 0 then return nil end
  return ("the database schema is at version %d, newer than this quarry knows (%d): "
    .. "use the quarry that migrated it, or a newer one"):format(newer[#newer], schema[#schema].version)
end

--- Apply every missing migration. Returns the list of versions applied.
-- progress(migration) is called before each one, if given.
function M.up(db, progress)
  local newer = newer_message(M.status(db))
  if newer then error(core.error({ code = "usage", message = newer }), 0) end
  local ran = {}
  for _, m in ipairs(schema) do
    local ok, err = db:transaction(function(tx)
      tx:exec(LOCK)
      tx:exec(TABLE) -- under the lock: concurrent CREATE IF NOT EXISTS can collide
      if tx:query_one("SELECT 1 AS x FROM schema_migrations WHERE version = $1", m.version) then
        return
      end
      if progress then progress(m) end
      tx:exec(require("quarry.outside").WRITER_ON) -- a migration's backfill is quarry's own write
      tx:exec(type(m.sql) == "function" and m.sql() or m.sql)
      tx:exec("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
      ran[#ran + 1] = m.version
    end)
    if not ok then
      local detail = type(err) == "table" and err or { message = tostring(err) }
      error(core.error({ code = detail.code or "query", sqlstate = detail.sqlstate,
        message = ("migration %d (%s) failed: %s"):format(m.version, m.name, detail.message) }), 0)
    end
  end
  -- The rollup tables follow their declaration in defs/summaries.lua
  -- (under the same lock: two migrating processes take turns here too).
  local ok, redone = db:transaction(function(tx)
    tx:exec(LOCK)
    return require("quarry.rollup").ensure(tx)
  end)
  if not ok then error(redone, 0) end
  for _, name in ipairs(redone) do
    if progress then progress({ version = 0, name = "rollup " .. name .. " rebuilt to match its declaration" }) end
  end
  return ran
end

--- {version, name, applied_at|nil} for every known migration, in order,
-- then {version, name, applied_at, unknown = true} for each applied one this
-- quarry does not know (a newer quarry's).
function M.status(db)
  local exists = db:query_one("SELECT to_regclass('schema_migrations') IS NOT NULL AS e").e
  local at, names, versions = {}, {}, {}
  if exists then
    for _, r in ipairs(db:query("SELECT version, name, applied_at::text AS at FROM schema_migrations ORDER BY 1")) do
      at[r.version], names[r.version] = r.at, r.name
      versions[#versions + 1] = r.version
    end
  end
  local out, known = {}, {}
  for _, m in ipairs(schema) do
    out[#out + 1] = { version = m.version, name = m.name, applied_at = at[m.version] }
    known[m.version] = true
  end
  for _, v in ipairs(versions) do
    if not known[v] then out[#out + 1] = { version = v, name = names[v], applied_at = at[v], unknown = true } end
  end
  return out
end

local current = setmetatable({}, { __mode = "k" }) -- the handles found current: the schema only moves on

--- Raise a clear error unless every migration is applied and every rollup
-- table matches its declaration (checked once per handle).
function M.require_current(db)
  if current[db] then return end
  local status = M.status(db)
  local newer = newer_message(status)
  if newer then error(core.error({ code = "usage", message = newer }), 0) end
  for _, m in ipairs(status) do
    if not m.applied_at then
      error(core.error({ code = "usage", message = ("the database schema is not current (migration %d missing): "
        .. "run 'quarry db migrate'"):format(m.version) }), 0)
    end
  end
  local stale = require("quarry.rollup").mismatched(db)
  if #stale > 0 then
    error(core.error({ code = "usage", message = ("rollup %s does not match its declaration in "
      .. "lua/quarry/defs/summaries.lua: run 'quarry db migrate'"):format(table.concat(stale, ", ")) }), 0)
  end
  current[db] = true
end

return M
