--- quarry.cli.cache: the shared cache
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local cache = p:command("cache", "The shared Redis cache."):command_target("cache_command")
  cache:command("stats", "Hits, misses, computes, lock waits, early refreshes, errors, keys and bytes.")
  cache:command("keys", "List cached keys matching a pattern, with TTL and size.")
    :argument("pattern", "Redis glob pattern, without the prefix.", "*")
  local inv = cache:command("invalidate",
    "Make keys stale: a PATTERN ('monthly_mining:2024-03:*'), or --date D to apply the invalidation rules.")
  inv:argument("pattern", "Key or pattern to invalidate."):args("?")
  inv:option("--date", "A settlement date (YYYY-MM-DD): invalidate what the rules say a change on it makes stale.")
  cache:command("clear", "Remove every quarry key from Redis.")
end

function commands.cache(args)
  local rules = require "quarry.rules"
  local c = quarry.cache
  local sub = args.cache_command
  if sub == "invalidate" then
    if (args.pattern == nil) == (args.date == nil) then
      cli.usage_error("cache invalidate needs a PATTERN or --date D (one of them)")
    end
    if args.date and not rules.check_date(args.date) then
      cli.usage_error(("--date '%s' %s"):format(args.date, rules.DATE_HELP))
    end
  end
  if not c.enabled then cli.usage_error("the cache is off (QUARRY_CACHE=off)") end
  -- A refusal by Redis (OOM, READONLY) is a failure (exit 1); no answer at all is exit 3.
  local function need(v, err)
    if v == nil then
      error(quarry.error({ code = type(err) == "table" and err.code == "redis" and "cache" or "connection",
        message = tostring(err and err.message or err or ("Redis at " .. c.conn:where() .. " unavailable")) }), 0)
    end
    return v
  end
  if sub == "stats" then
    local s = c:stats()
    if not s.all then need(nil) end
    local names = { "hits", "misses", "computes", "lock_waits", "early_refreshes", "errors", "sets", "catch_ups" }
    print(("cache at %s (prefix %s)"):format(s.where, c.prefix))
    print(("%-16s %14s"):format("counter", "all processes"))
    for _, k in ipairs(names) do print(("%-16s %14d"):format(k, s.all[k] or 0)) end
    print(("%-16s %14d"):format("keys", s.keys))
    print(("%-16s %14d"):format("bytes", s.bytes))
  elseif sub == "keys" then
    local keys = need(c:keys(args.pattern))
    for _, k in ipairs(keys) do print(("%-60s ttl %8.1fs %9d bytes"):format(k.logical, k.ttl, k.bytes)) end
    cli.note(("%d key(s)"):format(#keys))
  elseif sub == "invalidate" and args.date then
    for _, p in ipairs(need(rules.invalidate(c, nil, { args.date }))) do print("invalidated " .. p) end
  elseif sub == "invalidate" then
    if (args.pattern or "") == "" then cli.usage_error("cache invalidate needs a PATTERN (or --date D)") end
    local n = need(c:invalidate(args.pattern))
    print(n == "group" and ("invalidated group " .. args.pattern) or ("removed %d key(s)"):format(n))
  elseif sub == "clear" then
    print(("removed %d key(s)"):format(need(c:clear())))
  end
  return 0
end

return M
