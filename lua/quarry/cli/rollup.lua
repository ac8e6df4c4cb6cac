--- quarry.cli.rollup: the day-grain rollups
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local rollup = p:command("rollup", "The day-grain rollups the summaries read (declared in "
    .. "lua/quarry/defs/summaries.lua); quarry's own writes keep them exact.")
    :command_target("rollup_command")
  local function range_opts(c)
    c:option("--from", "First settlement date (YYYY-MM-DD).")
    c:option("--to", "Last settlement date (YYYY-MM-DD).")
    c:option("--date", "One settlement date (YYYY-MM-DD).")
  end
  range_opts(rollup:command("rebuild", "Recompute the rollups from the raw rows (all dates, or a range)."))
  range_opts(rollup:command("verify", "Compare the rollups with the raw rows and the direct CTE; exit 1 naming "
    .. "the dates that differ."))
  range_opts(rollup:command("refresh", "Mend the dates changed outside quarry (psql, a script's db:exec): "
    .. "their bitcoin, rollups and cached reports. With dates: recompute those dates' rollups."))
end

function commands.rollup(args)
  local rollup = require "quarry.rollup"
  local rules = require "quarry.rules"
  for _, k in ipairs({ "from", "to", "date" }) do
    if args[k] and not rules.check_date(args[k]) then
      cli.usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP))
    end
  end
  if args.date and (args.from or args.to) then cli.usage_error("give --date or --from/--to, not both") end
  local from, to = args.date or args.from, args.date or args.to
  if from and to and from > to then cli.usage_error("--from is after --to") end
  local sub = args.rollup_command
  if (from or to) and not (from and to) and sub == "refresh" then
    cli.usage_error("rollup refresh takes --date D, or --from D with --to D, or neither")
  end
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  if sub == "refresh" and not from then
    -- the dates the triggers noted (lua/quarry/outside.lua)
    local mended, failed = require("quarry.outside").repair(db, cli.cache_if_on(), { quiet = true })
    if #mended > 0 or #failed == 0 then
      print(#mended == 0 and "no dates changed outside quarry to mend"
        or ("mended %d date(s) changed outside quarry: bitcoin, rollups and cache"):format(#mended))
    end
    if #failed == 0 then return 0 end
    error(quarry.error({ code = "query", message = ("%d date(s) changed outside quarry cannot be mended yet, and "
      .. "no figure of them is served: %s"):format(#failed, failed[1].reason) }), 0)
  end
  if sub == "verify" then
    local diffs = rollup.verify(db, from, to)
    if #diffs == 0 then
      print(("rollups match the raw rows%s"):format(from and (" from " .. from .. " to " .. (to or "the end")) or ""))
      return 0
    end
    for _, d in ipairs(diffs) do print(("%s  %s"):format(d.date, d.what)) end
    local dates = {}
    for i, d in ipairs(diffs) do if i <= 5 then dates[#dates + 1] = d.date end end
    -- dates the triggers noted are mended whole (bitcoin too) by a refresh without dates
    local noted = #require("quarry.outside").pending(db)
    error(quarry.error({ code = "mismatch", message = ("rollups differ from the raw rows on %d date(s): %s%s; run "
      .. "%s"):format(#diffs, table.concat(dates, ", "), #diffs > 5 and ", ..." or "",
      noted > 0 and ("'quarry rollup refresh' (%d date(s) changed outside quarry wait to be mended)"):format(noted)
        or "'quarry rollup refresh --date D'") }), 0)
  end
  local show
  local dates = rollup.rebuild(db, from, to, function(done, total)
    show = show or quarry.log.progress(total, function(n, all, _, eta)
      return ("rollup: %d/%d date(s)  ETA %4.0fs "):format(n, all, eta)
    end)
    show(done, done == total)
  end)
  require("quarry.write").after(cli.cache_if_on(), { "curtailment_records", "historical_bitcoin_calculations" }, dates)
  print(("rollups recomputed for %d date(s)"):format(#dates))
  return 0
end

return M
