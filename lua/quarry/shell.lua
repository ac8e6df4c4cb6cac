--- quarry.shell: an interactive Lua prompt with quarry loaded. A statement
-- runs as typed; an expression prints its value, and a query result (rows
-- with .fields) prints as an aligned table, every digit as PostgreSQL sent
-- it. Line editing and a history kept in the state folder come from libedit
-- on a terminal. Piped input, or `quarry shell -c CODE`, runs the same way
-- and stops at the first error with exit 1, as a script would.
local formats = require "quarry.formats"

local M = {}

M.HELP = [[
quarry shell: Lua 5.4 with `quarry`, `db` and `cache` loaded.
  db:query("SELECT ... WHERE settlement_date = $1", "2024-03-01")   rows, printed as a table
  db:query_one(sql, ...)   db:exec(sql, ...)   db:transaction(function(tx) ... end)
  cache:get_or_compute(key, cache.TTL.MEDIUM, fn)   quarry.timings()
  help, \?   this text            (a statement over several lines waits for its end)
  \timing [on|off]                 say how long each input took
  \decimals [N|off]                round decimal columns to N places (off: every digit, the default)
  Ctrl-C     drop the line, or cancel the running query or code; the shell stays
  Ctrl-D, \q leave                 docs/SCRIPTING.md has the whole API]]

local core = require "quarry.core"

local DECIMAL = { numeric = true, float4 = true, float8 = true }

-- A value as the shell prints it: query results as a table of what
-- PostgreSQL sent (no thousands separators, rounded only under \decimals).
local function show(v, opts)
  if type(v) == "table" and type(v.fields) == "table" then
    if #v.fields == 0 or #v == 0 then -- the column names, then the count, as psql does
      local names = {}
      for i, f in ipairs(v.fields) do names[i] = f.name end
      return (#names > 0 and (table.concat(names, "  ") .. "\n") or "") .. ("(%d rows)"):format(#v)
    end
    local places = {}
    if opts.decimals then
      for _, f in ipairs(v.fields) do
        if DECIMAL[f.type or ""] then places[f.name] = opts.decimals end
      end
    end
    return formats.table({ fields = v.fields, rows = v, decimals = places, grouping = false })
      .. ("(%d row%s)"):format(#v, #v == 1 and "" or "s")
  end
  if type(v) == "table" then return formats.json_value(v) end
  return tostring(v)
end

-- The backslash commands: each takes the rest of the line and the shell's
-- options; returns true, or false with the complaint printed.
local COMMANDS = {
  ["?"] = function() io.write(M.HELP, "\n") return true end,
  q = function(_, opts) opts.quit = true return true end,
  timing = function(arg, opts)
    if arg == "" then opts.timing = not opts.timing
    elseif arg == "on" or arg == "off" then opts.timing = arg == "on"
    else io.stderr:write("\\timing takes on or off\n") return false end
    io.write("Timing is ", opts.timing and "on" or "off", ".\n")
    return true
  end,
  decimals = function(arg, opts)
    local n = tonumber(arg)
    if arg == "off" or arg == "" then opts.decimals = nil
    elseif n and math.type(n) == "integer" and n >= 0 and n <= 30 then opts.decimals = n
    else io.stderr:write("\\decimals takes a number of places from 0 to 30, or off\n") return false end
    io.write(opts.decimals and ("Decimal columns rounded to %d places.\n"):format(opts.decimals)
      or "Every digit as PostgreSQL sent it.\n")
    return true
  end,
}

-- Run one complete input; true, or false and the error already printed.
local function run_one(text, env, opts)
  if text:match("^%s*help%s*$") then text = "\\?" end
  local name, arg = text:match("^%s*\\(%S+)%s*(.-)%s*$")
  if name then
    local cmd = COMMANDS[name]
    if not cmd then
      io.stderr:write(("unknown command \\%s (\\? lists them)\n"):format(name))
      return false
    end
    return cmd(arg, opts)
  end
  local chunk, err = load("return " .. text, "=shell", "t", env)
  if not chunk then chunk, err = load(text, "=shell", "t", env) end
  if not chunk then
    io.stderr:write(err, "\n")
    return false
  end
  local t0 = core.now_ns()
  local r = table.pack(core.interruptible(chunk))
  local took = (core.now_ns() - t0) / 1e6
  if not r[1] then
    io.stderr:write(tostring(r[2]), "\n")
    opts.error = r[2]
  else
    for i = 2, r.n do io.write(show(r[i], opts), "\n") end
  end
  if opts.timing then io.write(("Time: %.3f ms\n"):format(took)) end
  return r[1]
end

local function env_of(quarry)
  return setmetatable({ quarry = quarry, db = quarry.db, cache = quarry.cache }, { __index = _G })
end

--- `quarry shell -c CODE`: CODE as the shell would take it. true, or false
-- and the error (already printed) that stopped it.
function M.eval(quarry, code)
  local opts = {}
  if run_one(code, env_of(quarry), opts) then return true end
  return false, opts.error
end

--- The prompt. Returns the exit code: 0, or 1 when piped input met an error.
function M.run(quarry)
  local env, opts = env_of(quarry), {}
  local interactive = core.isatty(0)
  local edit = interactive and core.has_readline -- libedit: history and line editing
  local history
  if edit then -- kept in the state folder, like the embedded services
    core.shell_interrupts() -- Ctrl-C cancels, as in psql; it no longer ends the process
    local home = require("quarry.services").home(quarry.settings())
    os.execute("mkdir -p '" .. home:gsub("'", "'\\''") .. "'")
    history = home .. "/shell_history"
    core.history_load(history)
  end
  if interactive then io.write(M.HELP:match("^[^\n]*"), " Type help for more.\n") end
  local buffer = ""
  local code = 0
  while true do
    local prompt = buffer == "" and "quarry> " or "     >> "
    local line
    if edit then
      line = core.readline(prompt)
    else
      if interactive then io.write(prompt) io.flush() end
      line = io.read("l")
    end
    if line == false then -- Ctrl-C at the prompt: the statement being typed is dropped
      buffer = ""
      goto continue
    end
    if not line then break end
    buffer = buffer == "" and line or (buffer .. "\n" .. line)
    local _, err = load("return " .. buffer, "=shell", "t", env)
    local _, err2 = load(buffer, "=shell", "t", env)
    local incomplete = err and err2 and (err:find("<eof>$") or err2:find("<eof>$"))
    if not incomplete then -- otherwise read another line into the buffer
      local text = buffer
      buffer = ""
      if not run_one(text, env, opts) and not interactive then
        code = 1 -- piped input stops at its first error, as a script does
        break
      end
      if opts.quit then break end
    end
    ::continue::
  end
  if history then core.history_save(history) end
  if interactive then io.write("\n") end
  return code
end

return M
