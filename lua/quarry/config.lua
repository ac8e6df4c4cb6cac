--- quarry.config: flags, then the environment, then defaults.
-- The names and defaults are the seed platform's (DATABASE_URL, DB_POOL_MAX,
-- DB_IDLE_TIMEOUT, DB_CONNECTION_TIMEOUT); everything else is quarry's.
local elexon = require "quarry.defs.elexon"
local market = require "quarry.defs.market"

local M = {}

-- name, environment variable, default, description: the one table that
-- --help, README and the resolver all follow.
M.settings = {
  { key = "database_url", env = "DATABASE_URL", default = nil,
    doc = "PostgreSQL URL; else libpq's PG* variables; else the embedded default" },
  { key = "pool_max", env = "DB_POOL_MAX", default = 20, int = true, min = 1, flag = "--pool-max",
    doc = "most connections the pool opens" },
  { key = "idle_timeout_ms", env = "DB_IDLE_TIMEOUT", default = 30000, int = true, min = 1,
    flag = "--idle-timeout",
    doc = "close a connection idle this long (ms)" },
  { key = "connect_timeout_ms", env = "DB_CONNECTION_TIMEOUT", default = 15000, int = true, min = 1,
    flag = "--connection-timeout",
    doc = "longest wait for a connection, queueing plus connecting (ms)" },
  { key = "max_lifetime_ms", env = "DB_MAX_LIFETIME", default = 1800000, int = true, min = 1,
    doc = "replace a connection after this long, less up to 10% jitter (ms)" },
  { key = "prepare", env = "DB_PREPARE", default = "on",
    doc = "'off' behind a transaction pooler (PgBouncer pool_mode=transaction): no named prepared statements, "
      .. "session settings sent as the pooler allows" },
  { key = "hold_warn_ms", env = "DB_HOLD_WARN", default = 60000, int = true, min = 1,
    doc = "warn once when a connection is held longer than this (ms)" },
  { key = "lock_wait_ms", env = "DB_LOCK_WAIT", default = 0, int = true, min = 0,
    doc = "longest a quarry write waits for a lock another session holds, then gives up changing nothing "
      .. "(ms; 0: as long as it takes, saying every 5 s who holds it)" },
  { key = "redis_url", env = "REDIS_URL", default = nil,
    doc = "redis://[:password@]host:port/db or unix:///path; else the embedded default" },
  { key = "cache", env = "QUARRY_CACHE", default = "on", doc = "'off' bypasses the shared cache" },
  { key = "cache_prefix", env = "QUARRY_CACHE_PREFIX", default = "quarry:",
    doc = "namespace of quarry's keys in Redis" },
  { key = "cache_timeout_ms", env = "QUARRY_CACHE_TIMEOUT", default = 250, int = true, min = 1,
    doc = "Redis connect and command timeout (ms)" },
  { key = "plugin_memory_mb", env = "QUARRY_PLUGIN_MEMORY", default = 256, int = true, min = 1,
    doc = "most memory a report plugin may use (MiB)" },
  { key = "plugin_timeout_s", env = "QUARRY_PLUGIN_TIMEOUT", default = 300, int = true, min = 1,
    doc = "longest a report plugin may run, its queries included (s)" },
  { key = "elexon_api_url", env = "ELEXON_API_URL", default = elexon.base_url, http = true,
    doc = "base URL of Elexon's BMRS API (quarry fetch curtailment|bmus)" },
  { key = "fetch_rate", env = "QUARRY_FETCH_RATE", default = elexon.requests_per_minute, int = true, min = 1,
    doc = "most requests quarry fetch starts per minute" },
  { key = "fetch_in_flight", env = "QUARRY_FETCH_IN_FLIGHT", default = elexon.in_flight, int = true, min = 1,
    doc = "requests quarry fetch has in flight at once" },
  { key = "fetch_timeout_s", env = "QUARRY_FETCH_TIMEOUT", default = elexon.timeout_s, int = true, min = 1,
    doc = "longest one request of quarry fetch may take (s)" },
  { key = "fetch_429_wait_s", env = "QUARRY_FETCH_429_WAIT", default = elexon.wait_after_429_s, int = true,
    min = 0, doc = "wait after an HTTP 429 that names no Retry-After (s)" },
  { key = "fetch_backoff_ms", env = "QUARRY_FETCH_BACKOFF", default = elexon.backoff_ms, int = true, min = 1,
    doc = "first wait before quarry fetch retries a request, doubling each time (ms)" },
  { key = "difficulty_api_url", env = "QUARRY_DIFFICULTY_URL", default = market.difficulty_url, http = true,
    doc = "base URL of the difficulty source (quarry fetch difficulty)" },
  { key = "price_api_url", env = "QUARRY_PRICE_URL", default = market.price_url, http = true,
    doc = "base URL of the bitcoin price source (quarry fetch price)" },
  { key = "home", env = "QUARRY_HOME", default = nil,
    doc = "state folder of the embedded services (default: .quarry in the checkout)" },
}

local config_error = require("quarry.core").usage

--- Hide the password in a PostgreSQL/Redis URL or a key=value conninfo.
function M.mask(s)
  if s == nil then return nil end
  s = tostring(s)
  if s:find("^%a[%w+.-]*://") then
    s = s:gsub("^(%a[%w+.-]*://[^/@:]*):[^@/]*@", "%1:***@")
    s = s:gsub("([?&]password=)[^&]*", "%1***")
  else
    s = s:gsub("(password%s*=%s*)'[^']*'", "%1***")
    s = s:gsub("(password%s*=%s*)[^%s']+", "%1***")
  end
  return s
end

local function parse_int(setting, raw, from)
  local n = require("quarry.rules").integer(raw)
  if not n or n < (setting.min or 0) then
    config_error(("%s must be an integer >= %d, got '%s'"):format(from, setting.min or 0, raw))
  end
  return n
end

--- Resolve every setting. flags: table keyed like M.settings' keys (nil = unset);
-- getenv: function (defaults to os.getenv), so tests can pass their own.
function M.resolve(flags, getenv)
  flags, getenv = flags or {}, getenv or os.getenv
  local cfg, source = {}, {}
  for _, s in ipairs(M.settings) do
    local v, from = flags[s.key], "flag"
    if v == nil then
      local e = getenv(s.env)
      if e ~= nil and e ~= "" then v, from = e, s.env end
    end
    if v == nil then v, from = s.default, "default" end
    if v ~= nil and s.int then
      v = parse_int(s, v, from == "flag" and (s.flag or ("--" .. s.key:gsub("_", "-"))) or from)
    end
    -- a source's base URL: said wrong now, not as five failed requests to a host named "http:"
    if s.http and not tostring(v):match("^[Hh][Tt][Tt][Pp][Ss]?://[^/%s?#]+[^%s]*$") then
      config_error(("%s must be an http:// or https:// URL with a host, got '%s'"):format(from, tostring(v)))
    end
    cfg[s.key], source[s.key] = v, from
  end
  local scheme = type(cfg.database_url) == "string" and cfg.database_url:match("^(%a[%w+.-]*)://")
  if scheme and scheme ~= "postgresql" and scheme ~= "postgres" then
    config_error(("%s must be a postgresql:// URL (or key=value settings), not %s://"):format(
      source.database_url == "flag" and "--database-url" or "DATABASE_URL", scheme))
  end
  for _, s in ipairs({ { "cache", "QUARRY_CACHE" }, { "prepare", "DB_PREPARE" } }) do
    if cfg[s[1]] ~= "on" and cfg[s[1]] ~= "off" then
      config_error(("%s must be 'on' or 'off', got '%s'"):format(s[2], cfg[s[1]]))
    end
  end
  -- libpq's own variables stand in for DATABASE_URL; only with none of them
  -- does quarry use (and start) its embedded services.
  local pg_env = getenv("PGHOST") or getenv("PGSERVICE") or getenv("PGDATABASE")
  cfg.embedded_db = cfg.database_url == nil and (pg_env == nil or pg_env == "")
  cfg.embedded_redis = cfg.redis_url == nil
  cfg.source = source
  return cfg
end

--- Options for core.pool_new from a resolved config.
function M.pool_options(cfg)
  return {
    conninfo = cfg.database_url,
    max_size = cfg.pool_max,
    idle_timeout_ms = cfg.idle_timeout_ms,
    connect_timeout_ms = cfg.connect_timeout_ms,
    max_lifetime_ms = cfg.max_lifetime_ms,
    hold_warn_ms = cfg.hold_warn_ms,
    no_prepare = cfg.prepare == "off",
  }
end

return M
