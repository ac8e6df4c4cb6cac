--- quarry.cli: the command line. main(argv, info) -> exit code.
-- Exit codes: 0 ok; 1 runtime failure; 2 usage or bad input; 3 a service
-- unreachable. Every failure is one line on stderr; --log-level debug adds
-- the traceback of a script error.
local core = require "quarry.core"
local argparse = require "argparse"
local quarry = require "quarry"
local config = require "quarry.config"

local cli = require "quarry.cli.common"

local M = {}

local fail = cli.fail
local EXIT_USAGE = cli.EXIT_USAGE

-- The command groups, one file each (lua/quarry/cli/NAME.lua), in the order
-- --help lists them: a new command is a file here and its name in this list.
local GROUPS = { "script", "db", "report", "ingest", "fetch", "partition", "miners", "rollup", "cache", "services",
                 "serve", "manual" }

local commands = {}
for _, g in ipairs(GROUPS) do
  for name, fn in pairs(require("quarry.cli." .. g).commands) do commands[name] = fn end
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
  p:flag("-V --version", "Print the version and exit."):action(function()
    print(("quarry %s (%s)"):format(info.version or "?", _VERSION))
    os.exit(0)
  end)
  p:command_target("command")

  for _, g in ipairs(GROUPS) do require("quarry.cli." .. g).define(p, info, plugin) end
  return p
end

--- Split argv so that everything after `run SCRIPT` goes to the script as is.
local function split_run(argv)
  local i = 1
  while argv[i] and argv[i]:sub(1, 1) == "-" do
    i = i + ((cli.VALUED[argv[i]] and not argv[i]:find("=", 1, true)) and 2 or 1)
  end
  if argv[i] ~= "run" or not argv[i + 1] or (argv[i + 1]:sub(1, 1) == "-" and argv[i + 1] ~= "-") then
    return argv, nil
  end
  local head, rest = {}, {}
  for j = 1, i + 1 do head[j] = argv[j] end
  for j = i + 2, #argv do rest[#rest + 1] = argv[j] end
  return head, rest
end

-- The command words of argv that name (sub)commands: "miners add" for
-- `quarry miners add S21 --hashrate 1`, so a usage error points at the help
-- that describes the options the user got wrong.
local function command_path(parser, argv)
  local words, p = {}, parser
  for _, a in ipairs(argv) do
    local found
    for _, c in ipairs(p._commands) do
      for _, alias in ipairs(c._aliases) do if alias == a then found = c end end
    end
    if found then words[#words + 1], p = a, found end
  end
  return table.concat(words, " ")
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

-- What went to standard output must have got there: a report sent to a
-- full disk ends in exit 1 with the reason, not 0. A reader that stopped
-- reading (`| head`) took what it wanted: EPIPE is not reported.
local EPIPE = 32
local function stdout_checked(code)
  local ok, msg, errno = core.stdout_status()
  if ok or errno == EPIPE then return code end
  fail("cannot write standard output: " .. msg)
  return code == 0 and cli.EXIT_RUNTIME or code
end

local main

function M.main(argv, info)
  local real_exit = os.exit
  -- Close the Lua state on every exit (argparse's --help, a script's
  -- os.exit): finalizers release connections and the sanitizers see no leak.
  os.exit = function(code, close) -- luacheck: ignore 122
    if code == nil or code == true then code = 0 elseif code == false then code = 1 end
    if require("quarry.db").open > 0 then -- its writes go with the connection: no success to report
      fail("os.exit inside a transaction: it was rolled back, nothing of it was committed")
      if code == 0 then code = cli.EXIT_RUNTIME end
    end
    return real_exit(stdout_checked(code), close ~= false)
  end
  return stdout_checked(main(argv, info or {}))
end

main = function(argv, info)

  for i, a in ipairs(argv) do
    if not utf8.len(a) then
      fail(("argument %d is not valid UTF-8"):format(i))
      return EXIT_USAGE
    end
  end
  local head, script_args = split_run(argv)
  local plugin, plugin_err = cli.report_plugin(head)
  local parser = build_parser(info, plugin)
  -- A report that cannot be found has no flags: `report dialy --date D`
  -- would say "unknown option '--date'" (and --help show no params) where
  -- the name is what is wrong.
  local function plugin_failed()
    fail(config.mask(tostring(type(plugin_err) == "table" and plugin_err.message or plugin_err)))
    return cli.exit_code(plugin_err)
  end
  if plugin_err then
    for _, a in ipairs(head) do
      if a == "-h" or a == "--help" then return plugin_failed() end
    end
  end
  local ok, args = parser:pparse(head)
  if not ok then
    if plugin_err then return plugin_failed() end
    fail(args)
    local path = command_path(parser, head)
    if plugin and plugin.name then path = path .. " " .. plugin.name end
    io.stderr:write(("Try 'quarry %s--help'.\n"):format(path ~= "" and path .. " " or ""))
    return EXIT_USAGE
  end
  if not args.command then
    io.stderr:write(parser:get_usage(), "\n\nquarry: a command is needed. Try 'quarry --help'.\n")
    return EXIT_USAGE
  end
  quarry.log.configure(args.log_level, args.log_format)
  quarry.configure({ database_url = args.database_url, redis_url = args.redis_url, pool_max = args.pool_max,
                     idle_timeout_ms = args.idle_timeout, connect_timeout_ms = args.connection_timeout })
  -- Every setting is checked before any work: a bad --pool-max is bad input
  -- now, not the first query's failure (or nothing, for a script that never
  -- queries).
  local sok, serr = pcall(quarry.settings)
  if not sok then
    fail(config.mask(tostring(type(serr) == "table" and serr.message or serr)))
    return EXIT_USAGE
  end

  local cmd = commands[args.command]
  -- Ctrl-C stops at once with one line; the shell keeps its own handling.
  local one_transaction = { ingest = true, db = args.db_command == "seed", demo = true, miners = true }
  if args.command ~= "shell" and args.command ~= "serve" then -- they answer Ctrl-C themselves
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
  return cli.exit_code(code.err)
end

return M
