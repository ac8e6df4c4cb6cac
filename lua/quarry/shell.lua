--- quarry.shell: an interactive Lua prompt with quarry loaded. A statement
-- runs as typed; an expression prints its value, and a query result (rows
-- with .fields) prints as an aligned table. Line editing comes from the
-- terminal (or rlwrap); the prompt works over pipes too.
local formats = require "quarry.formats"

local M = {}

local function show(v)
  if type(v) == "table" and type(v.fields) == "table" then
    return formats.table({ fields = v.fields, rows = v }) .. ("(%d row%s)"):format(#v, #v == 1 and "" or "s")
  end
  if type(v) == "table" then return formats.json_value(v) end
  return tostring(v)
end

function M.run(quarry)
  local env = setmetatable({ quarry = quarry, db = quarry.db, cache = quarry.cache }, { __index = _G })
  local core = require "quarry.core"
  local interactive = core.isatty(0)
  local edit = interactive and core.has_readline -- libedit: history and line editing
  if interactive then
    io.write("quarry shell: Lua 5.4 with `quarry`, `db` and `cache` loaded. db:query(...) prints a table.\n")
  end
  local buffer = ""
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
    local chunk, err = load("return " .. buffer, "=shell", "t", env)
    if not chunk then chunk, err = load(buffer, "=shell", "t", env) end
    local incomplete = not chunk and err:find("<eof>$")
    if not incomplete then -- otherwise read another line into the buffer
      buffer = ""
      if not chunk then
        io.write(err, "\n")
      else
        local r = table.pack(pcall(chunk))
        if not r[1] then
          io.write(tostring(r[2]), "\n")
        else
          for i = 2, r.n do io.write(show(r[i]), "\n") end
        end
      end
    end
  end
  if interactive then io.write("\n") end
  return 0
end

return M
