-- The Lua side of bench/run.sh: the trivial parameterised query through the
-- public API (quarry.db:query_one), per-call latency, median.
--   quarry run bench/bench_lua.lua ROUNDS
local quarry = require "quarry"
local core = require "quarry.core"

local rounds = math.tointeger(tonumber(arg[1] or "20000")) or 20000
local db = quarry.db
local sql = "SELECT $1::int AS v"

local function run(n)
  local ns = {}
  for i = 1, n do
    local t0 = core.now_ns()
    local row = db:query_one(sql, i)
    ns[i] = core.now_ns() - t0
    if row.v ~= i then error("wrong answer") end
  end
  table.sort(ns)
  return ns[n // 2 + 1] / 1000
end

run(rounds // 10 + 1) -- warm up
print(("lua_rtt_us %.2f us"):format(run(rounds)))
