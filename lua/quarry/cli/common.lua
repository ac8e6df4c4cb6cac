--- quarry.cli.common: what the command groups share: exit codes, the
-- usage error, flags, the cache when it is on, the report runner, output.
local core = require "quarry.core"
local quarry = require "quarry"
local services = require "quarry.services"
local formats = require "quarry.formats"

local M = {}

M.EXIT_RUNTIME, M.EXIT_USAGE, M.EXIT_SERVICE = 1, 2, 3

-- Global options that take a value: where the command word is, and where
-- `run SCRIPT` starts.
M.VALUED = { ["--database-url"] = true, ["--redis-url"] = true, ["--pool-max"] = true,
             ["--idle-timeout"] = true, ["--connection-timeout"] = true,
             ["--log-level"] = true, ["--log-format"] = true }

function M.exit_code(err)
  if type(err) == "table" then
    if err.code == "connection" then return M.EXIT_SERVICE end
    if err.code == "usage" then return M.EXIT_USAGE end
  end
  return M.EXIT_RUNTIME
end

M.usage_error = core.usage

-- One line on stderr: `text` as it is, or with --log-format json a JSON
-- line of `level` from `module` carrying msg.
local function line(level, module, msg, text)
  io.stdout:flush() -- what was printed comes first, on a terminal showing both
  local _, json = core.log_config()
  if json then quarry.log[level](msg, { module = module })
  else io.stderr:write(formats.visible(text, "\n\t"), "\n") end -- a value quoted in it cannot drive the terminal
end

--- A line of news ("wrote FILE").
function M.note(msg) line("info", "quarry", msg, msg) end

--- A script's error line (file:line: message).
function M.fail_as_is(msg) line("error", "script", msg, msg) end

--- The one line of a failure: "quarry: msg".
function M.fail(msg) line("error", "quarry", msg, "quarry: " .. msg) end

-- An integer flag from 1 (to max); otherwise "FLAG must be WHAT", exit 2.
function M.int_flag(value, flag, what, max)
  local n = require("quarry.rules").integer(value)
  if not n or n < 1 or (max and n > max) then M.usage_error(("%s must be %s"):format(flag, what)) end
  return n
end

-- The shared cache, or nil when QUARRY_CACHE=off.
function M.cache_if_on()
  local c = quarry.cache
  return c.enabled and c or nil
end

-- Write a report: whole file or nothing for ordinary files (quarry.files);
-- standard output for "-" (cli.lua checks at exit that it got there).
function M.write_output(text, path)
  if not path or path == "-" then
    io.write(text)
    return
  end
  require("quarry.files").replace(path, text)
end

-- The report runner, with the plugin limits of the settings.
function M.reports()
  local report = require "quarry.report"
  local cfg = quarry.settings()
  report.limits.memory_mb, report.limits.seconds = cfg.plugin_memory_mb, cfg.plugin_timeout_s
  return report
end

-- Every installed report's params as one set, for `quarry report --help`
-- with no report named: a choice's choices and an integer's bounds are those
-- of all of them; defaults and "required" belong to each report, not here.
local function all_params()
  local all = require("quarry.report").all(services.root())
  local names = {}
  for n in pairs(all) do names[#names + 1] = n end
  table.sort(names)
  local merged = {}
  for _, n in ipairs(names) do
    for pname, spec in pairs(all[n].params) do
      local m = merged[pname]
      if not m then
        m = { type = spec.type, min = spec.min, max = spec.max, choices = spec.choices and {} }
        merged[pname] = m
      elseif m.type == "integer" then
        m.min = m.min and spec.min and math.min(m.min, spec.min)
        m.max = m.max and spec.max and math.max(m.max, spec.max)
      end
      if m.choices and spec.choices then
        local have = {}
        for _, c in ipairs(m.choices) do have[c] = true end
        for _, c in ipairs(spec.choices) do if not have[c] then m.choices[#m.choices + 1] = c end end
      end
    end
  end
  return merged
end

-- The plugin `quarry report NAME` names, loaded before the command line is
-- parsed so that its own params become flags; nil when there is none or it
-- does not load (the report command then says why). With no name yet (`quarry
-- report --help`), a stand-in without a name whose params are every report's.
function M.report_plugin(head)
  local i = 1
  while head[i] and head[i]:sub(1, 1) == "-" do
    i = i + ((M.VALUED[head[i]] and not head[i]:find("=", 1, true)) and 2 or 1)
  end
  if head[i] ~= "report" then return nil end
  local name = head[i + 1]
  if not name or name:sub(1, 1) == "-" then
    local ok, params = pcall(all_params)
    return ok and { params = params } or nil
  end
  -- the declaration only: the settings (plugin limits) are checked once
  -- the flags that may override them are parsed
  local ok, plugin = pcall(function() return require("quarry.report").find(services.root(), name) end)
  if ok then return plugin end
  return nil, plugin -- why (an unknown name, a plugin that does not load), said if the flags cannot be parsed
end


return M
