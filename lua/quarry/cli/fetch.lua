--- quarry.cli.fetch: public sources in (Elexon's settlement stacks and BM
-- unit reference). The work is lua/quarry/fetch.lua's.
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }

function M.define(p, info, plugin) -- luacheck: ignore 212
  local fetch = p:command("fetch", "Fetch public data (Elexon BMRS; base URL: ELEXON_API_URL)."):command_target(
    "fetch_command")
  local c = fetch:command("curtailment", "Wind curtailment from the settlement stacks, day by day: every period, "
    .. "both sides; each day stored whole with its bitcoin. Resumes where an interrupted fetch stopped.")
  c:option("--from", "First settlement date (YYYY-MM-DD).")
  c:option("--to", "Last settlement date (YYYY-MM-DD); default --from.")
  c:flag("--refresh", "Fetch again the days already stored.")
  c:flag("--dry-run", "Print what each day would store (rows, MWh, GBP) and change nothing.")
  c:flag("--verify", "Fetch again and compare every period's stored MWh and GBP with Elexon's; exit 1 if any differ.")
  c:flag("--repair", "With --verify: store again the days that differ.")
  fetch:command("bmus", "The wind units of Elexon's BM unit reference (/reference/bmunits/all) into the bmus table.")
  for _, m in ipairs({
    fetch:command("difficulty", "Difficulty adjustments (QUARRY_DIFFICULTY_URL), each in force from its date; "
      .. "recalculates the bitcoin of the dates whose difficulty changes. Without --from: every adjustment."),
    fetch:command("price", "Bitcoin's price in GBP for every day of the range (QUARRY_PRICE_URL); a day with "
      .. "no price is refused, naming it."),
  }) do
    m:option("--from", "First date (YYYY-MM-DD).")
    m:option("--to", "Last date (YYYY-MM-DD); default --from.")
  end
end

local function check_range(args)
  local rules = require "quarry.rules"
  if not args.from then cli.usage_error(("fetch %s needs --from D (and --to D)"):format(args.fetch_command)) end
  for _, k in ipairs({ "from", "to" }) do
    if args[k] and not rules.check_date(args[k]) then
      cli.usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP))
    end
  end
  local to = args.to or args.from
  if args.from > to then cli.usage_error("--from is after --to") end
  if args.repair and not args.verify then cli.usage_error("--repair goes with --verify") end
  if args.dry_run and args.verify then cli.usage_error("give --dry-run or --verify, not both") end
  return args.from, to
end

local function plural(n, what) return ("%d %s%s"):format(n, what, n == 1 and "" or "s") end

function M.commands.fetch(args)
  local fetch = require "quarry.fetch"
  local migrate = require "quarry.migrate"
  local db = quarry.db
  if args.fetch_command == "bmus" then
    migrate.require_current(db)
    local r = fetch.bmus(db)
    print(("stored %s (%d new, %d with a new lead party)"):format(plural(r.units, "wind BM unit"), r.new, r.changed))
    return 0
  end
  if args.fetch_command == "difficulty" and not args.from then -- the whole history by default
    args.from, args.to = "2009-01-03", args.to or os.date("!%Y-%m-%d")
  end
  local from, to = check_range(args)
  migrate.require_current(db)
  if args.fetch_command == "price" then
    local r = require("quarry.market").fetch_price(db, cli.cache_if_on(), from, to)
    print(("stored %s"):format(plural(r.points, "daily price")))
    return 0
  elseif args.fetch_command == "difficulty" then
    local r = require("quarry.market").fetch_difficulty(db, cli.cache_if_on(), from, to)
    print(("stored %s; bitcoin recalculated for %s"):format(plural(r.points, "difficulty point"),
      plural(#r.dates, "date")))
    return 0
  end
  local s = fetch.curtailment(db, cli.cache_if_on(), { from = from, to = to, refresh = args.refresh,
    dry_run = args.dry_run, verify = args.verify, repair = args.repair })
  for _, m in ipairs(s.missing) do
    cli.note(("%s: Elexon has nothing yet for %s (recorded; a later fetch fills them)"):format(m.date,
      fetch.period_runs(m.periods)))
  end
  for _, d in ipairs(s.unpublished) do cli.note(("%s: not published yet (nothing stored)"):format(d)) end
  for _, r in ipairs(s.refused) do cli.fail(("%s refused, nothing of it changed: %s"):format(r.date, r.why)) end
  if args.verify then
    for _, d in ipairs(s.differ) do
      for _, p in ipairs(d.periods) do
        print(("%s SP%d: stored %s MWh, GBP %s; Elexon %s MWh, GBP %s"):format(d.date, p.period, p.stored_mwh,
          p.stored_gbp, p.mwh, p.gbp))
      end
    end
    print(("verified %s: %d differ%s"):format(plural(s.days - #s.unpublished - #s.refused, "day"), #s.differ,
      args.repair and (", " .. s.repaired .. " repaired") or ""))
    return (#s.differ > 0 and not args.repair or #s.refused > 0) and 1 or 0
  end
  if not args.dry_run then
    print(("fetched %s: %s stored (%s), %d already stored, %d missing periods, %d refused; %s"):format(
      plural(s.days, "day"), plural(s.stored, "day"), plural(s.rows, "row"), s.skipped, s.missing_periods,
      #s.refused, plural(s.requests, "request")))
  end
  return #s.refused > 0 and 1 or 0
end

return M
