--- quarry: what analyst scripts require.
--   local quarry = require "quarry"
--   quarry.db, quarry.cache, quarry.timed, quarry.timings, quarry.log,
--   quarry.configure
-- The database pool opens on first use of quarry.db, with the configuration
-- resolved from quarry.configure's flags, then the environment, then defaults.
local core = require "quarry.core"
local config = require "quarry.config"
local dbmod = require "quarry.db"
local services = require "quarry.services"

local M = {}
M.log = require "quarry.log"
M.config = config
M.error = core.error
M.parallel = require("quarry.parallel").run

local timings = core.timings_new()
local flags = {}
local resolved, db, cache

--- Set flags (same keys as quarry.config.settings) before the first query.
function M.configure(new_flags)
  if db or cache then error("quarry.configure must come before the first use of quarry.db or quarry.cache", 2) end
  flags = new_flags or {}
  resolved = nil
end

--- The resolved configuration (embedded service URLs filled in on demand).
function M.settings()
  resolved = resolved or config.resolve(flags)
  return resolved
end

local function open_db()
  local cfg = M.settings()
  if cfg.embedded_db then
    cfg.database_url = services.ensure(cfg).DATABASE_URL
    cfg.source.database_url = "embedded"
  end
  return dbmod.new(core.pool_new(config.pool_options(cfg), timings))
end

local function open_cache()
  local cfg = M.settings()
  local enabled = cfg.cache ~= "off"
  if enabled and cfg.embedded_redis then
    local ok, urls = pcall(services.ensure, cfg)
    if ok then
      cfg.redis_url = urls.REDIS_URL
      cfg.source.redis_url = "embedded"
    else
      M.log.warn("embedded Redis unavailable: running without the cache", { module = "cache" })
      enabled = false
    end
  end
  return require("quarry.cache").new({
    url = cfg.redis_url, enabled = enabled, prefix = cfg.cache_prefix,
    connect_timeout_ms = cfg.cache_timeout_ms, command_timeout_ms = cfg.cache_timeout_ms,
    log = require("quarry.stale").log(function() return M.db end), -- every value checked against it
  })
end

--- quarry.timed(name, fn, ...) -> fn's results; the duration goes to `name`.
function M.timed(name, fn, ...)
  local t0 = core.now_ns()
  local r = table.pack(pcall(fn, ...))
  timings:record(name, core.now_ns() - t0)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

--- {name = {count, total_ms, p50, p95, p99, max}} for every timed name and
-- query fingerprint, plus "pool.wait" (time spent acquiring connections).
function M.timings() return timings:summary() end
function M.reset_timings() timings:reset() end

--- Close the pool (quarry does this at exit; scripts rarely need to).
function M.close()
  if db then db:close() end
  if cache then cache:close() end
  db, cache = nil, nil
end

return setmetatable(M, {
  __index = function(_, k)
    if k == "db" then
      db = db or open_db()
      return db
    end
    if k == "cache" then
      cache = cache or open_cache()
      return cache
    end
    return nil
  end,
})
