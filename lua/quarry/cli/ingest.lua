--- quarry.cli.ingest: load CSV files
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local ingest = p:command("ingest", "Load files (CSV, saved Elexon answers, BM units); all or nothing.")
  ingest = ingest:command_target("ingest_command")
  local curtailment = ingest:command("curtailment", "Load curtailment rows (header: the columns of "
    .. "curtailment_records, docs/DATA.md); replaces the dates present, or --dates (one whose rows are stored as "
    .. "given is left as it is), computes their bitcoin, applies the invalidation rules.")
  for _, c in ipairs({
    curtailment,
    ingest:command("difficulty", "Load difficulty points (header: date,difficulty), each in force from its "
      .. "date; recalculates the bitcoin of the dates affected."),
  }) do
    c:argument("file", "CSV file."):args("?")
    c:flag("--template", "Print a sample file of this kind (header and rows) to start from, and exit.")
  end
  curtailment:flag("--dry-run", "Check the file and print, per date, what the load would change (rows, MWh, "
    .. "GBP, now and after); change nothing.")
  curtailment:option("--dates", "FROM..TO (or one date): the dates the file holds whole. Each is "
    .. "replaced, and one with no row had no curtailment (reports show it as 0, not as no data); a row of "
    .. "another date is refused. Without it, the dates present; a file without rows of farms stored for one of "
    .. "them is refused (it would remove them).")
  curtailment:flag("--farms-only", "Replace, on each day of the file, only the rows of the farms it has rows of "
    .. "(a correction of one farm); the other farms' rows stay. The days must be loaded already, not by a seed.")
  ingest:command("elexon", "Load saved Elexon settlement-stack answers (files or folders of .json; 'bid' or "
    .. "'offer' in each path), each date stored whole as quarry fetch stores it."):argument("path",
    "File or folder."):args("+")
  local price = ingest:command("price", "Load bitcoin prices by day: date,gbp_per_btc, or date,usd_per_btc with "
    .. "--usd-gbp; replaces those days' prices and invalidates their cached figures.")
  price:argument("file", "CSV file.")
  price:option("--usd-gbp", "For a file in USD: a CSV of date,gbp_per_usd with a rate for every date.")
  ingest:command("bmus", "Load a BM unit reference list (the shape of Elexon's /reference/bmunits/all); "
    .. "keeps the wind units."):argument("file", "JSON file.")
end

-- --dates FROM..TO (or one date) as the list of its days.
local function dates_flag(v)
  if v == nil then return nil end
  local rules = require "quarry.rules"
  local from, to = v:match("^(.-)%.%.(.*)$")
  from, to = from or v, to or v
  if not rules.check_date(from) or not rules.check_date(to) then
    cli.usage_error(("--dates '%s' is not a date or FROM..TO %s"):format(require("quarry.formats").visible(v),
      rules.DATE_HELP:gsub("^is not a date ", "")))
  end
  if from > to then cli.usage_error(("--dates '%s': %s is after %s"):format(v, from, to)) end
  return require("quarry.dates").days(from, to)
end

-- The dates a load would change, as a table: what each holds now, what it
-- would hold.
local function dry_run(preview)
  local rows, changing = {}, 0
  for i, d in ipairs(preview) do
    local b, a = d.before, d.after
    local same = b.loaded and b.rows == a.rows and b.mwh == a.mwh and b.gbp == a.gbp
    if not same then changing = changing + 1 end
    rows[i] = { date = d.date, now = b.loaded and tostring(b.rows) or "no data", after = a.rows,
                mwh_now = b.loaded and b.mwh or nil, mwh_after = a.mwh, gbp_now = b.loaded and b.gbp or nil,
                gbp_after = a.gbp, change = same and "same totals" or (not b.loaded and "new") or "replaced" }
  end
  local F = "numeric"
  io.write(require("quarry.formats").table({
    title = ("dry run: %d date(s), %d with other totals or not loaded yet; nothing was changed"):format(#preview,
      changing),
    fields = { { name = "date", type = "text" }, { name = "now", label = "rows now", type = "text" },
      { name = "after", label = "rows after", type = "int8" }, { name = "mwh_now", label = "MWh now", type = F },
      { name = "mwh_after", label = "MWh after", type = F }, { name = "gbp_now", label = "GBP now", type = F },
      { name = "gbp_after", label = "GBP after", type = F }, { name = "change", type = "text" } },
    rows = rows,
  }))
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

local function plural(n, what) return ("%d %s%s"):format(n, what, n == 1 and "" or "s") end

function commands.ingest(args)
  if args.ingest_command == "price" then
    require("quarry.migrate").require_current(quarry.db)
    local r = require("quarry.market").ingest_price(quarry.db, cli.cache_if_on(), args.file, args.usd_gbp)
    print(("loaded %s"):format(plural(r.points, "daily price")))
    return 0
  end
  if args.ingest_command == "elexon" or args.ingest_command == "bmus" then
    require("quarry.migrate").require_current(quarry.db)
    local fetch = require "quarry.fetch"
    if args.ingest_command == "bmus" then
      local elexon = require "quarry.elexon"
      local r = elexon.store_bmus(quarry.db, elexon.parse_bmus(fetch.read_file(args.file), args.file))
      print(("stored %s (%d new, %d with a new lead party)"):format(plural(r.units, "wind BM unit"), r.new,
        r.changed))
      return 0
    end
    local s = fetch.ingest_files(quarry.db, cli.cache_if_on(), args.path)
    for _, m in ipairs(s.missing) do
      cli.note(("%s: no answer for %s (recorded as missing)"):format(m.date, fetch.period_runs(m.periods)))
    end
    print(("loaded %s for %s: %s"):format(plural(s.files, "file"), plural(s.dates, "date"), plural(s.rows, "row")))
    return 0
  end
  if args.template then
    io.write(TEMPLATES[args.ingest_command])
    return 0
  end
  if not args.file then cli.usage_error("ingest " .. args.ingest_command .. " needs a FILE (or --template)") end
  local dates = dates_flag(args.dates) -- bad input first: before any service is asked
  if dates and args.farms_only then
    cli.usage_error("give --dates (the file is those days whole) or --farms-only (it is some farms of them), not both")
  end
  local migrate = require "quarry.migrate"
  local ingest = require "quarry.ingest"
  migrate.require_current(quarry.db)
  if args.ingest_command == "curtailment" and args.dry_run then
    dry_run(ingest.preview_curtailment(quarry.db, args.file, dates, args.farms_only))
  elseif args.ingest_command == "curtailment" then
    local r = ingest.curtailment(quarry.db, args.file, cli.cache_if_on(), nil, { dates = dates,
                                                                               merge = args.farms_only })
    local same = #r.dates - #r.changed -- dates whose rows were already there as loaded: left as they are
    -- the stored rows that went (with --farms-only, those of the farms the file has)
    print(("loaded %d curtailment row(s) for %d date(s)%s%s; %d bitcoin row(s) computed"):format(
      r.rows, #r.dates, same > 0 and (", %d of them unchanged"):format(same) or "",
      r.replaced > 0 and (", replacing %d stored row(s)%s"):format(r.replaced,
        args.farms_only and " of its farms" or "") or "",
      r.bitcoin_rows))
  else
    local r = ingest.difficulty(quarry.db, args.file, cli.cache_if_on())
    print(("loaded %d difficulty point(s); bitcoin recalculated for %d date(s)"):format(r.points, #r.dates))
  end
  return 0
end

return M
