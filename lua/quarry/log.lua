--- quarry.log: one line per event on stderr, as text or JSON lines.
-- quarry.log.info("loaded", { module = "ingest", context = { rows = n } })
local core = require "quarry.core"
local cjson = require("cjson").new()

local M = {}

local function text_value(v)
  local s = tostring(v)
  if s:find("[%s=\"]") or s == "" then return string.format("%q", s) end
  return s
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

--- The context fragment the core appends: a JSON object, or k=v pairs.
local function format_context(context, json)
  if context == nil then return nil end
  if type(context) ~= "table" then context = { value = context } end
  if json then
    local ok, encoded = pcall(cjson.encode, context)
    if ok then return encoded end
    local plain = {}
    for k, v in pairs(context) do plain[tostring(k)] = tostring(v) end
    return cjson.encode(plain)
  end
  local parts = {}
  for _, k in ipairs(sorted_keys(context)) do
    parts[#parts + 1] = k .. "=" .. text_value(context[k])
  end
  return table.concat(parts, " ")
end

local function emit(level, msg, opts)
  if not core.log_enabled(level) then return end
  opts = opts or {}
  local _, json = core.log_config()
  core.log(level, opts.module or "script", tostring(msg), format_context(opts.context, json))
end

function M.debug(msg, opts) emit("debug", msg, opts) end
function M.info(msg, opts) emit("info", msg, opts) end
function M.warn(msg, opts) emit("warn", msg, opts) end
function M.error(msg, opts) emit("error", msg, opts) end

--- Set the level ("debug".."error", "off") and/or the format ("text"|"json").
function M.configure(level, format)
  if format ~= nil and format ~= "text" and format ~= "json" then
    error(("unknown log format '%s' (text or json)"):format(format), 2)
  end
  core.log_config(level, format and format == "json")
end

function M.enabled(level) return core.log_enabled(level) end

--- A progress line on a terminal (stderr), redrawn at most five times a
-- second; nothing when stderr is not a terminal. line(done, total, rate,
-- eta_s) renders it. Returns show(done [, final]); final ends the line.
function M.progress(total, line)
  if not core.isatty(2) then return function() end end
  local t0, last = core.now_ns(), 0
  return function(done, final)
    local now = core.now_ns()
    if not final and now - last < 200000000 then return end
    last = now
    local secs = (now - t0) / 1e9
    local rate = secs > 0 and done / secs or 0
    local eta = (final or rate <= 0) and 0 or math.max(total - done, 0) / rate
    io.stderr:write("\r", line(done, total, rate, eta))
    if final then io.stderr:write("\n") end
  end
end

return M
