-- Helpers the Lua benchmark scripts share; they load it beside themselves:
--   local util = dofile(arg[0]:match("^(.*)/") .. "/util.lua")
local core = require "quarry.core"

local M = {}

--- The median of a list of numbers (sorts it).
function M.median(t)
  table.sort(t)
  return t[#t // 2 + 1]
end

--- Milliseconds since a core.now_ns() stamp.
function M.ms_since(t0) return (core.now_ns() - t0) / 1e6 end

return M
