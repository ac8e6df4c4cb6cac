--- quarry.cli.script: run an analyst script; the Lua prompt
-- A command group: define(p, info, plugin) adds its commands to the parser,
-- commands[name](args, info, extra) runs one (lua/quarry/cli.lua dispatches).
local cli = require "quarry.cli.common"
local quarry = require "quarry"
local dbmod = require "quarry.db"

local M = { commands = {} }
local commands = M.commands

function M.define(p, info, plugin) -- luacheck: ignore 212
  p:command("help", "Show the help of a command (quarry help report daily = quarry report daily --help).")
    :argument("topic", "The command, and its subcommand or report."):args("*")
  local run = p:command("run", "Run an analyst script with quarry preloaded; it sees its arguments in `arg`.")
  run:argument("script", "The Lua script (- reads it from standard input).")
  run:argument("args", "Arguments for the script."):args("*")

  p:command("shell", "An interactive Lua prompt with quarry loaded; query results print as tables; "
    .. "piped input stops at its first error (exit 1).")
    :option("-c", "Run this Lua as the shell would (an expression prints its value), then exit."):target("code")
end

function commands.run(args, _, script_args)
  local script = args.script
  local chunk, err
  if script == "-" then
    chunk, err = load(io.read("a"), "=stdin", "t")
  else
    chunk, err = loadfile(script)
  end
  if not chunk then
    local missing = not io.open(script, "r")
    cli.usage_error(missing and ("cannot open script '" .. script .. "'") or err)
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
  cli.fail_as_is(msg)
  if quarry.log.enabled("debug") then io.stderr:write(e.traceback:gsub("^\n", ""), "\n") end
  return cli.exit_code(e.err)
end

function commands.shell(args)
  if args.code then -- exit codes as a script's: 3 when a service is unreachable, else 1
    local ok, err = require("quarry.shell").eval(quarry, args.code)
    return ok and 0 or (type(err) == "table" and cli.exit_code(err) or cli.EXIT_RUNTIME)
  end
  return require("quarry.shell").run(quarry)
end

function commands.help(args, info)
  local argv = {}
  for i, w in ipairs(args.topic or {}) do argv[i] = w end
  argv[#argv + 1] = "--help"
  return require("quarry.cli").main(argv, info)
end

return M
