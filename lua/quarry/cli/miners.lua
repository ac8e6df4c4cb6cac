--- quarry.cli.miners: the miner models
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local miners = p:command("miners", "The miner models bitcoin is computed for: list them (no subcommand), "
    .. "add one, recalculate."):command_target("miners_command"):require_command(false)
  local madd = miners:command("add", "Add a model and compute its bitcoin for every stored date (one "
    .. "transaction; every cached report goes stale).")
  madd:argument("name", "Model name: A-Z, 0-9 and _ (e.g. S21_PRO).")
  madd:option("--hashrate-th", "Hash rate, TH/s."):count(1)
  madd:option("--watts", "Power draw, W."):count(1)
  madd:option("--description", "What it is (e.g. 'Bitmain Antminer S21 Pro').")
  local mrec = miners:command("recalculate", "Recompute the bitcoin of the stored dates (all, or a range).")
  mrec:option("--from", "First settlement date (YYYY-MM-DD).")
  mrec:option("--to", "Last settlement date (YYYY-MM-DD).")
  mrec:flag("--stale", "Only the dates whose stored block reward or difficulty is not the one in force now "
    .. "(after a halving is added to lua/quarry/defs/mining.lua: the dates from it on).")
end

function commands.miners(args)
  local mining = require "quarry.mining"
  local rules = require "quarry.rules"
  for _, k in ipairs({ "from", "to" }) do
    if args[k] and not rules.check_date(args[k]) then
      cli.usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP))
    end
  end
  if args.from and args.to and args.from > args.to then cli.usage_error("--from is after --to") end
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  local sub = args.miners_command
  if sub == "add" then
    local r = mining.add(db, cli.cache_if_on(), args.name, args.hashrate_th, args.watts, args.description)
    print(("added %s: %d bitcoin row(s) on %d date(s)"):format(args.name, r.bitcoin_rows, #r.dates))
  elseif sub == "recalculate" then
    local r = mining.recalculate_range(db, cli.cache_if_on(), args.from, args.to, args.stale)
    print(("recalculated %d bitcoin row(s) on %d date(s)"):format(r.bitcoin_rows, #r.dates))
  else
    print(("%-12s %12s %10s %8s  %s"):format("model", "TH/s", "watts", "J/TH", "description"))
    for _, m in ipairs(mining.models(db)) do
      print(("%-12s %12s %10s %8s  %s"):format(m.name, m.hashrate_th, m.power_watts, m.j_per_th, m.description or ""))
    end
  end
  return 0
end

return M
