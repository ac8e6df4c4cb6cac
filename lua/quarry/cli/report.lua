--- quarry.cli.report: reports, the list of plugins, and the demo
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"
local services = require "quarry.services"

local M = { commands = {} }
local commands = M.commands


function M.define(p, info, plugin) -- luacheck: ignore 212
  local report = p:command("report", "Run a report plugin (see 'quarry plugins').")
  report:argument("name", "The report.")
  local formats = require("quarry.formats").NAMES
  report:option("--format", table.concat(formats, ", ") .. " (default: from the -o file's extension, else "
    .. formats[1] .. ").")
    :choices(formats):overwrite(false)
  report:option("-o --output", "Write to this file instead of standard output."):overwrite(false)
  report:flag("--no-cache", "Compute afresh; do not read or write the cache.")
  -- The params of the report asked for are its flags (lua/quarry/params.lua
  -- gives their help): a plugin's own params need no edit here.
  local params = require "quarry.params"
  local own, names = plugin and plugin.params or {}, {} -- with no report named, every report's (cli/common.lua)
  for name, spec in pairs(own) do
    if not params.problem(name, spec) then names[#names + 1] = name end
  end
  table.sort(names)
  -- each at most once: of --date A --date B, neither is surely the one meant
  for _, name in ipairs(names) do report:option(params.flag(name), params.help(own[name])):overwrite(false) end
  report:flag("--direct", "Read the raw rows instead of the day-grain rollups (slow; for checking). "
    .. "Implies --no-cache.")
  p:command("plugins", "List the reports with their descriptions and params.")
  p:command("demo", "Start the embedded services, migrate, seed three months, print the monthly report "
    .. "and write it as HTML.")
end

-- What -o FILE's extension says the format is (nil: it says nothing).
local BY_EXTENSION = { csv = "csv", tsv = "tsv", json = "json", html = "html", htm = "html", txt = "table" }

-- The format to write: --format, else the -o file's extension, else table;
-- a --format the extension contradicts is refused before any work, and so
-- is an extension quarry does not write with no --format (top.xlsx would
-- otherwise be a text table under a spreadsheet's name).
local function output_format(format, path)
  local ext = path and path:match("%.(%w+)$")
  local implied = ext and BY_EXTENSION[ext:lower()]
  if ext and not implied and not format then
    local known = {}
    for e in pairs(BY_EXTENSION) do known[#known + 1] = "." .. e end
    table.sort(known)
    cli.usage_error(("-o %s: quarry does not write .%s files; name it %s, or give --format"):format(path, ext,
      table.concat(known, ", ")))
  end
  if format and implied and format ~= implied then
    cli.usage_error(("--format %s does not match %s (.%s is %s): change one of them"):format(format, path, ext,
      implied))
  end
  return format or implied or "table"
end

function commands.report(args)
  local report = cli.reports()
  local formats = require "quarry.formats"
  args.format = output_format(args.format, args.output)
  local plugin = report.find(services.root(), args.name)
  local raw = {}
  for k in pairs(plugin.params) do raw[k] = args[k] end
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  local p = report.params(plugin, raw)
  local run = report.run(db, cli.cache_if_on(), plugin, p, { no_cache = args.no_cache, direct = args.direct })
  cli.write_output(formats.render(run.result, args.format), args.output)
  if args.output then
    cli.note(("wrote %s (%s)"):format(args.output, run.cached and "cached" or "computed"))
  end
  -- a csv or a file has no footer a person reads: the missing days are said here too
  local note = report.coverage_note(run.result.coverage)
  if note and (args.output or args.format ~= "table") then cli.note("quarry: " .. note:gsub("\n", "\nquarry: ")) end
  return 0
end

function commands.plugins()
  local report = cli.reports()
  local all, broken = report.all(services.root())
  local names = {}
  for n in pairs(all) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local pl = all[n]
    local params = {}
    for pname, spec in pairs(pl.params) do
      -- what the value may be, at a glance: a choice's choices, an integer's bounds
      local what = spec.choices and table.concat(spec.choices, "|") or spec.type:upper()
      if spec.type == "integer" and (spec.min or spec.max) then
        what = ("%s (%s..%s)"):format(what, spec.min or "", spec.max or "")
      end
      params[#params + 1] = ("--%s %s%s%s"):format(pname:gsub("_", "-"), what,
        spec.required and " (required)" or "", spec.default ~= nil and (" (default " .. tostring(spec.default) .. ")")
        or "")
    end
    table.sort(params)
    print(("%-10s %s"):format(n, pl.description))
    for _, line in ipairs(params) do print("           " .. line) end
  end
  -- the others are listed; the ones that do not load are said, and the exit says so too
  for _, b in ipairs(broken) do cli.fail(("%s (not listed)"):format(b.message)) end
  return #broken > 0 and cli.EXIT_RUNTIME or 0
end

function commands.demo()
  -- Three months of synthetic data go into the database: only into quarry's
  -- own, never one DATABASE_URL names (the old platform's variable, likely
  -- set on an analyst's machine to the real database).
  local cfg = quarry.settings()
  if not cfg.embedded_db then
    cli.usage_error(("quarry demo writes synthetic data into the embedded default services, and %s names another "
      .. "database; run it without (env -u DATABASE_URL quarry demo), or seed that one on purpose: quarry db seed")
      :format(cfg.source.database_url == "flag" and "--database-url" or
        (cfg.database_url and "DATABASE_URL" or "a PG* variable (PGHOST, PGSERVICE or PGDATABASE)")))
  end
  local report = cli.reports()
  local formats = require "quarry.formats"
  local db = quarry.db
  require("quarry.migrate").up(db)
  cli.note("demo: embedded services up, schema migrated")
  local r = require("quarry.seed").run(db, { from = "2024-01-01", to = "2024-03-31", scale = 1,
    cache = cli.cache_if_on(), -- real days there are left as they are (exit 2), saying so
    advice = "the demo leaves them as they are (QUARRY_HOME=DIR quarry demo runs it on services of its own)" })
  local same = r.dates - r.changed -- a second demo finds them stored: nothing to compute again
  cli.note(("demo: seeded 2024-01..03: %d curtailment rows%s, %d bitcoin rows computed, in %.1f s")
    :format(r.rows, same > 0 and (" (%d of %d dates unchanged)"):format(same, r.dates) or "", r.bitcoin_rows,
      r.total_s))
  local plugin = report.find(services.root(), "monthly")
  local p = report.params(plugin, { month = "2024-03" })
  local run = report.run(db, cli.cache_if_on(), plugin, p, {})
  io.write(formats.render(run.result, "table"))
  local html = services.home(quarry.settings()) .. "/demo-monthly-2024-03.html"
  cli.write_output(formats.render(run.result, "html"), html)
  cli.note(("demo: wrote %s"):format(html))
  return 0
end

return M
