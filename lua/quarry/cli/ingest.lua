--- quarry.cli.ingest: load CSV files
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local ingest = p:command("ingest", "Load CSV files; all or nothing."):command_target("ingest_command")
  ingest:command("curtailment", "Load curtailment rows (header: the columns of curtailment_records); "
    .. "replaces the dates present, computes their bitcoin, applies the invalidation rules.")
    :argument("file", "CSV file.")
  ingest:command("difficulty", "Load difficulty points (header: date,difficulty), each in force from its "
    .. "date; recalculates the bitcoin of the dates affected.")
    :argument("file", "CSV file.")
end

function commands.ingest(args)
  local migrate = require "quarry.migrate"
  local ingest = require "quarry.ingest"
  migrate.require_current(quarry.db)
  if args.ingest_command == "curtailment" then
    local r = ingest.curtailment(quarry.db, args.file, cli.cache_if_on())
    print(("loaded %d curtailment row(s) for %d date(s); %d bitcoin row(s) computed"):format(
      r.rows, #r.dates, r.bitcoin_rows))
  else
    local r = ingest.difficulty(quarry.db, args.file, cli.cache_if_on())
    print(("loaded %d difficulty point(s); bitcoin recalculated for %d date(s)"):format(r.points, #r.dates))
  end
  return 0
end

return M
