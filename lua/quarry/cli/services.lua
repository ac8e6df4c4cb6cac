--- quarry.cli.services: the embedded default services
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"
local config = require "quarry.config"
local services = require "quarry.services"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local svc = p:command("services",
    "The embedded default: a private PostgreSQL and Redis for this checkout (unix sockets only).")
    :command_target("services_command")
  svc:command("up", "Start them (creating the cluster the first time).")
  svc:command("down", "Stop them; the data stays.")
  svc:command("status", "Say whether each runs (exit 3 if not).")
end

function commands.services(args)
  local cfg = quarry.settings()
  local verb = args.services_command
  local ok, code = services.run(verb, cfg, verb == "up")
  if verb == "up" and ok then
    local urls = services.urls(cfg) or {}
    print("postgresql: " .. config.mask(urls.DATABASE_URL or "?"))
    print("redis:      " .. config.mask(urls.REDIS_URL or "?"))
    print("state:      " .. services.home(cfg))
  end
  if ok then return 0 end
  return (code == cli.EXIT_SERVICE or verb ~= "status") and cli.EXIT_SERVICE or cli.EXIT_RUNTIME
end

return M
