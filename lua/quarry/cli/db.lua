--- quarry.cli.db: the schema and the seed
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"
local config = require "quarry.config"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  local db = p:command("db", "The database schema."):command_target("db_command")
  db:command("migrate", "Apply the schema migrations that are missing (safe to repeat).")
  db:command("status", "Show the database quarry uses, which migrations are applied, and what each source "
    .. "(fetch, ingest, seed) loaded.")
  local seed = db:command("seed", "Load deterministic, realistic synthetic data through the ingest path "
    .. "(scale 1 is about 500k curtailment rows for 2022-2025); never over days a fetch or ingest loaded, and "
    .. "reports say which days are synthetic.")
  seed:option("--scale", "Multiply the acceptances (rows) by N.", "1")
  seed:option("--from", "First settlement date (YYYY-MM-DD).", "2022-01-01")
  seed:option("--to", "Last settlement date (YYYY-MM-DD).", "2025-12-31")
  db:command("psql", "Open psql on the database quarry uses (the embedded default too); arguments after -- "
    .. "go to psql: quarry db psql -- -c 'SELECT count(*) FROM curtailment_records'.")
    :argument("psql_args", "Arguments for psql."):args("*")
end

-- psql on quarry's database: the same URL quarry connects with (libpq's PG*
-- variables when that is what quarry uses), with the caller's terminal.
local function psql_command(args)
  local cfg = quarry.settings()
  local url = cfg.database_url
  if cfg.embedded_db then url = require("quarry.services").ensure(cfg).DATABASE_URL end
  local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
  local cmd = { "psql" }
  if url then cmd[#cmd + 1] = q(url) end
  for _, a in ipairs(args.psql_args or {}) do cmd[#cmd + 1] = q(a) end
  io.stdout:flush()
  local ok, how, code = os.execute(table.concat(cmd, " "))
  if ok then return 0 end
  if how == "exit" and code == 127 then cli.usage_error("psql is not installed (apt-get install postgresql-client)") end
  return how == "exit" and code or 1
end

local function seed_command(args)
  local rules = require "quarry.rules"
  local scale = cli.int_flag(args.scale, "--scale", "an integer from 1 to 100", 100)
  for _, k in ipairs({ "from", "to" }) do
    if not rules.check_date(args[k]) then cli.usage_error(("--%s '%s' %s"):format(k, args[k], rules.DATE_HELP)) end
  end
  if args.from > args.to then cli.usage_error("--from is after --to") end
  local migrate = require "quarry.migrate"
  migrate.up(quarry.db)
  local r = require("quarry.seed").run(quarry.db, { from = args.from, to = args.to, scale = scale,
    cache = cli.cache_if_on() })
  local same = r.dates - r.changed -- already stored as generated: left as they are, bitcoin and all
  print(("seeded %s..%s: %d curtailment row(s) on %d date(s)%s, %d bitcoin row(s) computed, in %.1f s"):format(
    args.from, args.to, r.rows, r.dates, same > 0 and (", %d of them unchanged"):format(same) or "",
    r.bitcoin_rows, r.total_s))
  return 0
end

-- What the database holds, by where it came from (schema version 13): which
-- days are real and which a seed made up, at a glance.
local SOURCES = [[
SELECT 'loaded days' AS what, coalesce(source, 'unrecorded') AS source, count(*)::int AS n,
       min(settlement_date)::text AS first, max(settlement_date)::text AS last
FROM curtailment_loaded_days GROUP BY 1, 2
UNION ALL
SELECT 'difficulty points', coalesce(source, 'unrecorded'), count(*)::int, min(effective_date)::text,
       max(effective_date)::text
FROM bitcoin_difficulty GROUP BY 1, 2
UNION ALL
SELECT 'daily prices', NULL, count(*)::int, min(price_date)::text, max(price_date)::text FROM bitcoin_prices
HAVING count(*) > 0
ORDER BY 1 DESC, 2]]

local function data_summary(db)
  local lines, order = {}, {}
  for _, r in ipairs(db:query(SOURCES)) do
    if not lines[r.what] then lines[r.what], order[#order + 1] = {}, r.what end
    local part = ("%d (%s..%s)"):format(r.n, r.first, r.last)
    lines[r.what][#lines[r.what] + 1] = r.source and (r.source .. " " .. part) or part
  end
  if #order == 0 then print("data: none loaded yet (quarry fetch or ingest; quarry db seed makes some up)") end
  for _, what in ipairs(order) do print(("%s: %s"):format(what, table.concat(lines[what], ", "))) end
  local outside = require "quarry.outside"
  local noted = outside.pending(db)
  if #noted > 0 then
    local dates = {}
    for i, n in ipairs(noted) do dates[i] = n.date end
    print(("changed outside quarry: %d date(s) (%s; last by %s at %s), mended before any report of them "
      .. "(or now: quarry rollup refresh)"):format(#noted, outside.dates_text(dates), noted[#noted].role,
      noted[#noted].at))
    for _, n in ipairs(noted) do
      if n.failed then print(("  %s cannot be mended yet: %s"):format(n.date, n.failed)) end
    end
  end
end

function commands.db(args)
  if args.db_command == "seed" then return seed_command(args) end
  if args.db_command == "psql" then return psql_command(args) end
  local migrate = require "quarry.migrate"
  local db = quarry.db
  if args.db_command == "migrate" then
    local ran = migrate.up(db, function(m)
      quarry.log.info(m.version > 0 and ("applying migration %d: %s"):format(m.version, m.name) or m.name,
        { module = "migrate" })
    end)
    local st = migrate.status(db)
    print(("schema at version %d (%d applied now)"):format(st[#st].version, #ran)) -- up refused a newer one
    return 0
  end
  local cfg = quarry.settings()
  local v = db:query_one("SELECT current_setting('server_version') AS v, current_database() AS d")
  print(("database: %s (%s, PostgreSQL %s)"):format(config.mask(cfg.database_url or "libpq PG* environment"),
    cfg.source.database_url, v.v))
  local pending, newer = 0, 0
  for _, m in ipairs(migrate.status(db)) do
    print(("  %3d  %-10s %s%s"):format(m.version, m.applied_at and "applied" or "PENDING", m.name,
      m.unknown and " (NEWER than this quarry)" or ""))
    if not m.applied_at then pending = pending + 1 end
    if m.unknown then newer = newer + 1 end
  end
  if newer > 0 then
    print(("%d migration(s) from a newer quarry: this one refuses the database; use that quarry"):format(newer))
    return cli.EXIT_RUNTIME
  end
  if pending > 0 then print(("%d migration(s) pending: run 'quarry db migrate'"):format(pending)) end
  if pending == 0 then data_summary(db) end
  return 0
end

return M
