--- quarry.cli.ingest: load CSV files
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local ingest = p:command("ingest", "Load CSV files; all or nothing."):command_target("ingest_command")
  for _, c in ipairs({
    ingest:command("curtailment", "Load curtailment rows (header: the columns of curtailment_records, "
      .. "docs/DATA.md); replaces the dates present, computes their bitcoin, applies the invalidation rules."),
    ingest:command("difficulty", "Load difficulty points (header: date,difficulty), each in force from its "
      .. "date; recalculates the bitcoin of the dates affected."),
  }) do
    c:argument("file", "CSV file."):args("?")
    c:flag("--template", "Print a sample file of this kind (header and rows) to start from, and exit.")
  end
end

-- What --template prints: the header quarry takes and rows as real data has
-- them (volume negative: the MWh given up; payment |volume| x price).
local TEMPLATES = {
  curtailment = table.concat({
    "settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,original_price,final_price,"
      .. "so_flag,cadl_flag",
    "2024-03-12,39,T_SGRWO-1,Seagreen Wind Energy Limited,-41.250,-3300.00,-80.00,-80.00,true,false",
    "2024-03-12,39,T_SGRWO-1,Seagreen Wind Energy Limited,-12.500,-1000.00,-80.00,-80.00,true,",
    "2024-03-12,40,T_DOREW-1,Dorenell Windfarm Limited,-18.000,-1260.00,-70.00,-70.00,true,false",
  }, "\n") .. "\n",
  difficulty = "date,difficulty\n2024-03-01,83148355189239\n2024-03-14,83950000000000\n",
}

function commands.ingest(args)
  if args.template then
    io.write(TEMPLATES[args.ingest_command])
    return 0
  end
  if not args.file then cli.usage_error("ingest " .. args.ingest_command .. " needs a FILE (or --template)") end
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
