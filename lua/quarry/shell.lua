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
  help       this text            (a statement over several lines waits for its end)
  Ctrl-D     leave                docs/SCRIPTING.md has the whole API]]

local function show(v)
  if type(v) == "table" and type(v.fields) == "table" then
    if #v.fields == 0 or #v == 0 then -- the column names, then the count, as psql does
      local names = {}
      for i, f in ipairs(v.fields) do names[i] = f.name end
      return (#names > 0 and (table.concat(names, "  ") .. "\n") or "") .. ("(%d rows)"):format(#v)
    end
    return formats.table({ fields = v.fields, rows = v }) .. ("(%d row%s)"):format(#v, #v == 1 and "" or "s")
  end
  if type(v) == "table" then return formats.json_value(v) end
  return tostring(v)
end

-- Run one complete input; true, or false and the error already printed.
local function run_one(text, env)
  if text:match("^%s*help%s*$") or text:match("^%s*\\%?%s*$") then
    io.write(M.HELP, "\n")
    return true
  end
  local chunk, err = load("return " .. text, "=shell", "t", env)
  if not chunk then chunk, err = load(text, "=shell", "t", env) end
  if not chunk then
    io.stderr:write(err, "\n")
    return false
  end
  local r = table.pack(pcall(chunk))
  if not r[1] then
    io.stderr:write(tostring(r[2]), "\n")
    return false
  end
  for i = 2, r.n do io.write(show(r[i]), "\n") end
  return true
end

local function env_of(quarry)
  return setmetatable({ quarry = quarry, db = quarry.db, cache = quarry.cache }, { __index = _G })
end

--- `quarry shell -c CODE`: CODE as the shell would take it; 0, or 1 on an error.
function M.eval(quarry, code)
  return run_one(code, env_of(quarry)) and 0 or 1
end

--- The prompt. Returns the exit code: 0, or 1 when piped input met an error.
function M.run(quarry)
  local env = env_of(quarry)
  local core = require "quarry.core"
  local interactive = core.isatty(0)
  local edit = interactive and core.has_readline -- libedit: history and line editing
  local history
  if edit then -- kept in the state folder, like the embedded services
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
    if not line then break end
    buffer = buffer == "" and line or (buffer .. "\n" .. line)
    local _, err = load("return " .. buffer, "=shell", "t", env)
    local _, err2 = load(buffer, "=shell", "t", env)
    local incomplete = err and err2 and err2:find("<eof>$")
    if not incomplete then -- otherwise read another line into the buffer
      local text = buffer
      buffer = ""
      if not run_one(text, env) and not interactive then
        code = 1 -- piped input stops at its first error, as a script does
        break
      end
    end
  end
  if history then core.history_save(history) end
  if interactive then io.write("\n") end
  return code
end

return M
