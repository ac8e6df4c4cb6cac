--- quarry.cli: the command line. main(argv, info) -> exit code.
-- Exit codes: 0 ok; 1 runtime failure; 2 usage or bad input; 3 a service
-- unreachable. Every failure is one line on stderr; --log-level debug adds
-- the traceback of a script error.
local core = require "quarry.core"
local argparse = require "argparse"
local quarry = require "quarry"
local config = require "quarry.config"
local services = require "quarry.services"
local dbmod = require "quarry.db"

local M = {}

local EXIT_RUNTIME, EXIT_USAGE, EXIT_SERVICE = 1, 2, 3

local function exit_code(err)
  if type(err) == "table" then
    if err.code == "connection" then return EXIT_SERVICE end
    if err.code == "usage" then return EXIT_USAGE end
  end
  return EXIT_RUNTIME
end

local usage_error = core.usage

local function fail(msg) io.stderr:write("quarry: ", msg, "\n") end

-- An integer flag from 1 (to max); otherwise "FLAG must be WHAT", exit 2.
local function int_flag(value, flag, what, max)
  local n = math.tointeger(tonumber(value))
  if not n or n < 1 or (max and n > max) then usage_error(("%s must be %s"):format(flag, what)) end
  return n
end

-- The configuration and exit codes, for the end of `quarry --help`.
local function epilog()
  local lines = { "Configuration (flag, then environment, then default):" }
  local cfg_ok, cfg = pcall(config.resolve, {})
  for _, s in ipairs(config.settings) do
    local default = s.default ~= nil and tostring(s.default) or "-"
    local now = cfg_ok and cfg[s.key] ~= nil and config.mask(cfg[s.key]) or nil
    lines[#lines + 1] = ("  %-22s %-9s %s%s"):format(s.env, default, s.doc,
      now and tostring(now) ~= default and (" [now: " .. tostring(now) .. "]") or "")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Exit codes: 0 ok, 1 runtime failure, 2 usage or bad input, 3 service unreachable."
  lines[#lines + 1] = "Lua API for scripts: docs/SCRIPTING.md"
  return table.concat(lines, "\n")
end

-- The params of the shipped reports: the flags `quarry report --help` shows
-- when no report is named (with one, its own params are the flags).
local REPORT_PARAMS = {
  date = { type = "date" }, month = { type = "month" }, year = { type = "year" }, miner = { type = "miner" },
  farm = { type = "farm" }, lead_party = { type = "lead_party" },
  by = { type = "choice", choices = { "farm", "lead_party" } }, limit = { type = "integer", min = 1 },
}

local function build_parser(info, plugin)
  local p = argparse("quarry",
    "Scriptable analytics for UK wind curtailment and the bitcoin it could have mined.")
    :epilog(epilog())
  p:option("--database-url", "PostgreSQL URL (overrides DATABASE_URL).")
  p:option("--redis-url", "Redis URL (overrides REDIS_URL).")
  p:option("--pool-max", "Most database connections (overrides DB_POOL_MAX).")
  p:option("--idle-timeout", "Close connections idle this long, ms (overrides DB_IDLE_TIMEOUT).")
  p:option("--connection-timeout", "Longest wait for a connection, ms (overrides DB_CONNECTION_TIMEOUT).")
  p:flag("--timings", "Print query and block timings to stderr at exit.")
  p:option("--log-level", "debug, info, warn or error.", "info")
    :choices({ "debug", "info", "warn", "error", "off" })
  p:option("--log-format", "text or json.", "text"):choices({ "text", "json" })
  p:flag("--version", "Print the version and exit."):action(function()
    print(("quarry %s (%s)"):format(info.version or "?", _VERSION))
    os.exit(0)
  end)
  p:command_target("command")

  local run = p:command("run", "Run an analyst script with quarry preloaded; it sees its arguments in `arg`.")
  run:argument("script", "The Lua script.")
  run:argument("args", "Arguments for the script."):args("*")

  local db = p:command("db", "The database schema."):command_target("db_command")
  db:command("migrate", "Apply the schema migrations that are missing (safe to repeat).")
  db:command("status", "Show the database quarry uses and which migrations are applied.")
  local seed = db:command("seed", "Load deterministic, realistic synthetic data through the ingest path "
    .. "(scale 1 is about 500k curtailment rows for 2022-2025).")
  seed:option("--scale", "Multiply the acceptances (rows) by N.", "1")
  seed:option("--from", "First settlement date (YYYY-MM-DD).", "2022-01-01")
  seed:option("--to", "Last settlement date (YYYY-MM-DD).", "2025-12-31")

  local report = p:command("report", "Run a report plugin (see 'quarry plugins').")
  report:argument("name", "The report.")
  local formats = require("quarry.formats").NAMES
  report:option("--format", table.concat(formats, ", ") .. ".", formats[1]):choices(formats)
  report:option("-o --output", "Write to this file instead of standard output.")
  report:flag("--no-cache", "Compute afresh; do not read or write the cache.")
  -- The params of the report asked for are its flags (lua/quarry/params.lua
  -- gives their help): a plugin's own params need no edit here.
  local params = require "quarry.params"
  local own, names = plugin and plugin.params or REPORT_PARAMS, {}
  for name, spec in pairs(own) do
    if not params.problem(name, spec) then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do report:option(params.flag(name), params.help(own[name])) end
  report:flag("--direct", "Read the raw rows instead of the day-grain rollups (slow; for checking). "
    .. "Implies --no-cache.")
  p:command("plugins", "List the reports with their descriptions and params.")
  p:command("shell", "An interactive Lua prompt with quarry loaded; query results print as tables.")
  p:command("demo", "Start the embedded services, migrate, seed three months, print the monthly report "
    .. "and write it as HTML.")

  local ingest = p:command("ingest", "Load CSV files; all or nothing."):command_target("ingest_command")
  ingest:command("curtailment", "Load curtailment rows (header: the columns of curtailment_records); "
    .. "replaces the dates present, computes their bitcoin, applies the invalidation rules.")
    :argument("file", "CSV file.")
  ingest:command("difficulty", "Load difficulty points (header: date,difficulty), each in force from its "
    .. "date; recalculates the bitcoin of the dates affected.")
    :argument("file", "CSV file.")

  local part = p:command("partition", "Range-partition the big tables by their plans "
    .. "(lua/quarry/defs/partitions.lua), on a database in use.")
    :command_target("partition_command")
  local function table_arg(c) c:argument("table", "One table (default: every table with a plan)."):args("?") end
  table_arg(part:command("plan", "Print the DDL apply would run and the rows each partition would get; "
    .. "changes nothing."))
  local apply = part:command("apply", "Partition: build, copy in committed batches (resumable: rerun after a "
    .. "crash), catch up rows written meanwhile, verify counts and checksums, swap names. The plain table is "
    .. "kept (and kept in step) for rollback.")
  table_arg(apply)
  apply:option("--batch-size", "Rows per committed batch.", "50000")
  table_arg(part:command("verify", "Compare every partition's rows (count and checksum) with the kept plain "
    .. "table; exit 1 naming the partitions that differ."))
  local rollback = part:command("rollback", "Back to a plain table holding every row (or abandon an unfinished "
    .. "apply).")
  table_arg(rollback)
  local maintain = part:command("maintain", "Create partitions ahead, move rows out of the default partition, "
    .. "detach partitions past retention. Idempotent; safe from cron.")
  table_arg(maintain)
  table_arg(part:command("finish", "Drop the kept plain table: writes stop paying for the mirror, and rollback "
    .. "is no longer possible."))
  for _, c in ipairs({ apply, rollback, maintain }) do
    c:option("--lock-timeout", "Longest wait for a lock, ms; waits retry.", "2000")
  end

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
  range_opts(rollup:command("refresh", "Recompute the rollups of dates changed outside quarry (psql) and "
    .. "invalidate their cached reports."))

  local cache = p:command("cache", "The shared Redis cache."):command_target("cache_command")
  cache:command("stats", "Hits, misses, computes, lock waits, early refreshes, errors, keys and bytes.")
  cache:command("keys", "List cached keys matching a pattern, with TTL and size.")
    :argument("pattern", "Redis glob pattern, without the prefix.", "*")
  local inv = cache:command("invalidate",
    "Make keys stale: a PATTERN ('monthly_mining:2024-03:*'), or --date D to apply the invalidation rules.")
  inv:argument("pattern", "Key or pattern to invalidate."):args("?")
  inv:option("--date", "A settlement date (YYYY-MM-DD): invalidate what the rules say a change on it makes stale.")
  cache:command("clear", "Remove every quarry key from Redis.")

  local svc = p:command("services",
    "The embedded default: a private PostgreSQL and Redis for this checkout (unix sockets only).")
    :command_target("services_command")
  svc:command("up", "Start them (creating the cluster the first time).")
  svc:command("down", "Stop them; the data stays.")
  svc:command("status", "Say whether each runs (exit 3 if not).")
  return p
end

-- Options that take a value, to find where `run SCRIPT` starts.
local VALUED = { ["--database-url"] = true, ["--redis-url"] = true, ["--pool-max"] = true,
                 ["--idle-timeout"] = true, ["--connection-timeout"] = true,
                 ["--log-level"] = true, ["--log-format"] = true }

--- Split argv so that everything after `run SCRIPT` goes to the script as is.
local function split_run(argv)
  local i = 1
  while argv[i] and argv[i]:sub(1, 1) == "-" do
    i = i + ((VALUED[argv[i]] and not argv[i]:find("=", 1, true)) and 2 or 1)
  end
  if argv[i] ~= "run" or not argv[i + 1] or argv[i + 1]:sub(1, 1) == "-" then return argv, nil end
  local head, rest = {}, {}
  for j = 1, i + 1 do head[j] = argv[j] end
  for j = i + 2, #argv do rest[#rest + 1] = argv[j] end
  return head, rest
end

-- ---- commands ----

local commands = {}

function commands.run(args, _, script_args)
  local script = args.script
  local chunk, err = loadfile(script)
  if not chunk then
    local missing = not io.open(script, "r")
    usage_error(missing and ("cannot open script '" .. script .. "'") or err)
  end
  local script_arg = { [0] = script }
  for i, v in ipairs(script_args or {}) do script_arg[i] = v end
  _G.arg = script_arg -- as lua(1) does: scripts read their arguments from `arg`

  local function handler(e)
    local where = type(e) ~= "string" and dbmod.caller() or nil
    return { err = e, where = where, traceback = debug.traceback("", 2) }
  end
  local r = table.pack(xpcall(chunk, handler, table.unpack(script_arg)))
  if r[1] then return 0 end
  local e = r[2]
  local msg = tostring(e.err)
  if e.where and not msg:find(e.where, 1, true) then msg = e.where .. ": " .. msg end
  io.stderr:write(msg, "\n")
  if quarry.log.enabled("debug") then io.stderr:write(e.traceback:gsub("^\n", ""), "\n") end
  return exit_code(e.err)
end

local function cache_if_on()
  local c = quarry.cache
  return c.enabled and c or nil
end

function commands.ingest(args)
  local migrate = require "quarry.migrate"
  local ingest = require "quarry.ingest"
  migrate.require_current(quarry.db)
  if args.ingest_command == "curtailment" then
    local r = ingest.curtailment(quarry.db, args.file, cache_if_on())
    print(("loaded %d curtailment row(s) for %d date(s); %d bitcoin row(s) computed"):format(
      r.rows, #r.dates, r.bitcoin_rows))
  else
    local r = ingest.difficulty(quarry.db, args.file, cache_if_on())
    print(("loaded %d difficulty point(s); bitcoin recalculated for %d date(s)"):format(r.points, #r.dates))
  end
  return 0
end

local function seed_command(args)
  local rules = require "quarry.rules"
  local scale = int_flag(args.scale, "--scale", "an integer from 1 to 100", 100)
  for _, k in ipairs({ "from", "to" }) do
    if not rules.check_date(args[k]) then usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP)) end
  end
  if args.from > args.to then usage_error("--from is after --to") end
  local migrate = require "quarry.migrate"
  migrate.up(quarry.db)
  local r = require("quarry.seed").run(quarry.db, { from = args.from, to = args.to, scale = scale,
    cache = cache_if_on() })
  print(("seeded %s..%s: %d curtailment row(s) on %d date(s), %d bitcoin row(s), in %.1f s"):format(
    args.from, args.to, r.rows, r.dates, r.bitcoin_rows, r.total_s))
  return 0
end

function commands.db(args)
  if args.db_command == "seed" then return seed_command(args) end
  local migrate = require "quarry.migrate"
  local db = quarry.db
  if args.db_command == "migrate" then
    local ran = migrate.up(db, function(m)
      quarry.log.info(m.version > 0 and ("applying migration %d: %s"):format(m.version, m.name) or m.name,
        { module = "migrate" })
    end)
    local st = migrate.status(db)
    print(("schema at version %d (%d applied now)"):format(st[#st].version, #ran))
    return 0
  end
  local cfg = quarry.settings()
  local v = db:query_one("SELECT current_setting('server_version') AS v, current_database() AS d")
  print(("database: %s (%s, PostgreSQL %s)"):format(config.mask(cfg.database_url or "libpq PG* environment"),
    cfg.source.database_url, v.v))
  local pending = 0
  for _, m in ipairs(migrate.status(db)) do
    print(("  %3d  %-10s %s"):format(m.version, m.applied_at and "applied" or "PENDING", m.name))
    if not m.applied_at then pending = pending + 1 end
  end
  if pending > 0 then print(("%d migration(s) pending: run 'quarry db migrate'"):format(pending)) end
  return 0
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
  return (code == EXIT_SERVICE or verb ~= "status") and EXIT_SERVICE or EXIT_RUNTIME
end

function commands.cache(args)
  local rules = require "quarry.rules"
  local c = quarry.cache
  local sub = args.cache_command
  if sub == "invalidate" then
    if (args.pattern == nil) == (args.date == nil) then
      usage_error("cache invalidate needs a PATTERN or --date D (one of them)")
    end
    if args.date and not rules.check_date(args.date) then
      usage_error(("--date '%s' %s"):format(args.date, rules.DATE_HELP))
    end
  end
  if not c.enabled then usage_error("the cache is off (QUARRY_CACHE=off)") end
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
    io.stderr:write(("%d key(s)\n"):format(#keys))
  elseif sub == "invalidate" and args.date then
    for _, p in ipairs(need(rules.invalidate(c, nil, { args.date }))) do print("invalidated " .. p) end
  elseif sub == "invalidate" then
    local n = need(c:invalidate(args.pattern))
    print(n == "group" and ("invalidated group " .. args.pattern) or ("removed %d key(s)"):format(n))
  elseif sub == "clear" then
    print(("removed %d key(s)"):format(need(c:clear())))
  end
  return 0
end

function commands.miners(args)
  local mining = require "quarry.mining"
  local rules = require "quarry.rules"
  for _, k in ipairs({ "from", "to" }) do
    if args[k] and not rules.check_date(args[k]) then
      usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP))
    end
  end
  if args.from and args.to and args.from > args.to then usage_error("--from is after --to") end
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  local sub = args.miners_command
  if sub == "add" then
    local r = mining.add(db, cache_if_on(), args.name, args.hashrate_th, args.watts, args.description)
    print(("added %s: %d bitcoin row(s) on %d date(s)"):format(args.name, r.bitcoin_rows, #r.dates))
  elseif sub == "recalculate" then
    local r = mining.recalculate_range(db, cache_if_on(), args.from, args.to)
    print(("recalculated %d bitcoin row(s) on %d date(s)"):format(r.bitcoin_rows, #r.dates))
  else
    print(("%-12s %12s %10s %8s  %s"):format("model", "TH/s", "watts", "J/TH", "description"))
    for _, m in ipairs(mining.models(db)) do
      print(("%-12s %12s %10s %8s  %s"):format(m.name, m.hashrate_th, m.power_watts, m.j_per_th, m.description or ""))
    end
  end
  return 0
end

function commands.partition(args)
  local partition = require "quarry.partition"
  local sub = args.partition_command
  local opts = {}
  if args.batch_size then opts.batch_size = int_flag(args.batch_size, "--batch-size", "a positive integer") end
  if args.lock_timeout then
    opts.lock_timeout_ms = int_flag(args.lock_timeout, "--lock-timeout", "a positive integer (ms)")
  end
  local plans = partition.plans(args.table) -- an unknown table is bad input, before any connection
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  opts.cache = cache_if_on()
  for _, t in ipairs(plans) do
    if sub == "plan" then
      for _, line in ipairs(partition.plan(db, t.name, t.plan)) do print(line) end
    elseif sub == "apply" then
      local r = partition.apply(db, t.name, t.plan, opts)
      print(("%s: partitioned; %d row(s) copied in %.1f s (%.0f rows/s), %d caught up, parent locked %.1f ms, "
        .. "%.1f s in all"):format(t.name, r.copied, r.copy_s, r.copy_s > 0 and r.copied / r.copy_s or 0,
        r.caught_up, r.lock_ms, r.total_s))
    elseif sub == "verify" then
      local r = partition.verify(db, t.name, t.plan)
      local names = {}
      for name in pairs(r.rows) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do print(("%-50s %10d rows"):format(name, r.rows[name])) end
      print(("%s: %d partition(s)%s%s"):format(t.name, #r.partitions,
        r.against and (", identical to " .. r.against .. " (counts and checksums)") or "",
        (r.default_rows or 0) > 0 and ("; %d row(s) in the default partition: run maintain"):format(r.default_rows)
        or ""))
    elseif sub == "rollback" then
      local r = partition.rollback(db, t.name, t.plan, opts)
      print(r.abandoned and ("%s: unfinished apply abandoned; the table is unchanged"):format(t.name)
        or ("%s: a plain table again, %d row(s); locked %.1f ms"):format(t.name, r.rows, r.lock_ms))
    elseif sub == "maintain" then
      local actions = partition.maintain(db, t.name, t.plan, opts)
      for _, a in ipairs(actions) do print(t.name .. ": " .. a) end
      if #actions == 0 then print(t.name .. ": nothing to do") end
    elseif sub == "finish" then
      partition.finish(db, t.name)
      print(("%s: dropped %s; rollback is no longer possible"):format(t.name, t.name .. partition.OLD))
    end
  end
  return 0
end

function commands.rollup(args)
  local rollup = require "quarry.rollup"
  local rules = require "quarry.rules"
  for _, k in ipairs({ "from", "to", "date" }) do
    if args[k] and not rules.check_date(args[k]) then
      usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP))
    end
  end
  if args.date and (args.from or args.to) then usage_error("give --date or --from/--to, not both") end
  local from, to = args.date or args.from, args.date or args.to
  if from and to and from > to then usage_error("--from is after --to") end
  local sub = args.rollup_command
  if sub == "refresh" and not (from or to) then usage_error("rollup refresh needs --date D or --from D --to D") end
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  if sub == "verify" then
    local diffs = rollup.verify(db, from, to)
    if #diffs == 0 then
      print(("rollups match the raw rows%s"):format(from and (" from " .. from .. " to " .. (to or "the end")) or ""))
      return 0
    end
    for _, d in ipairs(diffs) do print(("%s  %s"):format(d.date, d.what)) end
    local dates = {}
    for i, d in ipairs(diffs) do if i <= 5 then dates[#dates + 1] = d.date end end
    error(quarry.error({ code = "mismatch", message = ("rollups differ from the raw rows on %d date(s): %s%s; run "
      .. "'quarry rollup refresh --date D'"):format(#diffs, table.concat(dates, ", "),
      #diffs > 5 and ", ..." or "") }), 0)
  end
  local show
  local dates = rollup.rebuild(db, from, to, function(done, total)
    show = show or quarry.log.progress(total, function(n, all, _, eta)
      return ("rollup: %d/%d date(s)  ETA %4.0fs "):format(n, all, eta)
    end)
    show(done, done == total)
  end)
  require("quarry.write").after(cache_if_on(), { "curtailment_records", "historical_bitcoin_calculations" }, dates)
  print(("rollups recomputed for %d date(s)"):format(#dates))
  return 0
end

-- Write a report: whole file or nothing for ordinary files (a temporary
-- beside it, then rename); straight through for "-" and devices.
local function write_output(text, path)
  if not path or path == "-" then
    io.write(text)
    return
  end
  if path:match("^/dev/") or path:match("^/proc/") then
    local f, err = io.open(path, "wb")
    if not f then usage_error(("cannot write %s: %s"):format(path, err)) end
    f:write(text)
    f:close()
    return
  end
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then usage_error(("cannot write %s: %s"):format(path, err)) end
  f:write(text)
  f:close()
  assert(os.rename(tmp, path)) -- whole file or nothing
end

-- The report runner, with the plugin limits of the settings.
local function reports()
  local report = require "quarry.report"
  local cfg = quarry.settings()
  report.limits.memory_mb, report.limits.seconds = cfg.plugin_memory_mb, cfg.plugin_timeout_s
  return report
end

function commands.report(args, info)
  local report = reports()
  local formats = require "quarry.formats"
  local plugin = report.find(info.root or services.root(), args.name)
  local raw = {}
  for k in pairs(plugin.params) do raw[k] = args[k] end
  local db = quarry.db
  require("quarry.migrate").require_current(db)
  local p = report.params(plugin, raw, db)
  local run = report.run(db, cache_if_on(), plugin, p, { no_cache = args.no_cache, direct = args.direct })
  write_output(formats.render(run.result, args.format), args.output)
  if args.output then
    io.stderr:write(("wrote %s (%s)\n"):format(args.output, run.cached and "cached" or "computed"))
  end
  return 0
end

function commands.plugins(_, info)
  local report = reports()
  local all = report.all(info.root or services.root())
  local names = {}
  for n in pairs(all) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local pl = all[n]
    local params = {}
    for pname, spec in pairs(pl.params) do
      params[#params + 1] = ("--%s %s%s%s"):format(pname:gsub("_", "-"), spec.type:upper(),
        spec.required and " (required)" or "", spec.default ~= nil and (" (default " .. tostring(spec.default) .. ")")
        or "")
    end
    table.sort(params)
    print(("%-10s %s"):format(n, pl.description))
    for _, line in ipairs(params) do print("           " .. line) end
  end
  return 0
end

function commands.demo(_, info)
  local report = reports()
  local formats = require "quarry.formats"
  local db = quarry.db
  io.stderr:write("demo: embedded services up, schema migrated\n")
  require("quarry.migrate").up(db)
  local r = require("quarry.seed").run(db, { from = "2024-01-01", to = "2024-03-31", scale = 1,
                                             cache = cache_if_on() })
  io.stderr:write(("demo: seeded 2024-01..03: %d curtailment rows, %d bitcoin rows in %.1f s\n")
    :format(r.rows, r.bitcoin_rows, r.total_s))
  local plugin = report.find(info.root or services.root(), "monthly")
  local p = report.params(plugin, { month = "2024-03" }, db)
  local run = report.run(db, cache_if_on(), plugin, p, {})
  io.write(formats.render(run.result, "table"))
  local html = services.home(quarry.settings()) .. "/demo-monthly-2024-03.html"
  write_output(formats.render(run.result, "html"), html)
  io.stderr:write(("demo: wrote %s\n"):format(html))
  return 0
end

function commands.shell()
  return require("quarry.shell").run(quarry)
end

local function print_timings()
  local t = quarry.timings()
  local names = {}
  for name in pairs(t) do names[#names + 1] = name end
  if #names == 0 then return end
  table.sort(names, function(a, b) return t[a].total_ms > t[b].total_ms end)
  local w = 20
  for _, n in ipairs(names) do w = math.max(w, math.min(#n, 70)) end
  local fmt = "%-" .. w .. "s %8s %11s %9s %9s %9s %9s\n"
  io.stderr:write(fmt:format("timing (ms)", "count", "total", "p50", "p95", "p99", "max"))
  for _, n in ipairs(names) do
    local s = t[n]
    local f = function(x) return ("%.3f"):format(x) end
    io.stderr:write(fmt:format(#n > 70 and (n:sub(1, 67) .. "...") or n, s.count, f(s.total_ms),
      f(s.p50), f(s.p95), f(s.p99), f(s.max)))
  end
end

-- The plugin `quarry report NAME` names, loaded before the command line is
-- parsed so that its own params become flags; nil when there is none or it
-- does not load (the report command then says why).
local function report_plugin(head, info)
  local i = 1
  while head[i] and head[i]:sub(1, 1) == "-" do
    i = i + ((VALUED[head[i]] and not head[i]:find("=", 1, true)) and 2 or 1)
  end
  local name = head[i] == "report" and head[i + 1]
  if not name or name:sub(1, 1) == "-" then return nil end
  local ok, plugin = pcall(function() return reports().find(info.root or services.root(), name) end)
  return ok and plugin or nil
end

function M.main(argv, info)
  info = info or {}
  local real_exit = os.exit
  -- Close the Lua state on every exit (argparse's --help, a script's
  -- os.exit): finalizers release connections and the sanitizers see no leak.
  os.exit = function(code, close) -- luacheck: ignore 122
    io.stdout:flush()
    return real_exit(code, close ~= false)
  end

  for i, a in ipairs(argv) do
    if not utf8.len(a) then
      fail(("argument %d is not valid UTF-8"):format(i))
      return EXIT_USAGE
    end
  end
  local head, script_args = split_run(argv)
  local parser = build_parser(info, report_plugin(head, info))
  local ok, args = parser:pparse(head)
  if not ok then
    fail(args)
    io.stderr:write("Try 'quarry --help'.\n")
    return EXIT_USAGE
  end
  if not args.command then
    io.stderr:write(parser:get_usage(), "\n\nquarry: a command is needed. Try 'quarry --help'.\n")
    return EXIT_USAGE
  end
  quarry.log.configure(args.log_level, args.log_format)
  quarry.configure({ database_url = args.database_url, redis_url = args.redis_url, pool_max = args.pool_max,
                     idle_timeout_ms = args.idle_timeout, connect_timeout_ms = args.connection_timeout })

  local cmd = commands[args.command]
  -- Ctrl-C stops at once with one line; the shell keeps its own handling.
  local one_transaction = { ingest = true, db = args.db_command == "seed", demo = true, miners = true }
  if args.command ~= "shell" then
    core.on_interrupt(one_transaction[args.command] and "quarry: interrupted; nothing was committed"
      or "quarry: interrupted; the transaction in progress was rolled back, nothing of it was committed")
  end
  local rok, code = xpcall(cmd, function(e)
    if quarry.log.enabled("debug") then
      return { err = e, traceback = debug.traceback("", 2) }
    end
    return { err = e }
  end, args, info, script_args)
  if args.timings then print_timings() end
  quarry.close()
  if rok then return code or 0 end
  fail(config.mask(tostring(code.err)))
  if code.traceback then io.stderr:write(code.traceback:gsub("^\n", ""), "\n") end
  return exit_code(code.err)
end

return M
