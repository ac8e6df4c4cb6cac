-- lua/quarry/init.lua: what `require "quarry"` gives a script.
local h = require "spec.helper"

describe("require 'quarry'", function()
  it("opens the pool and the cache on first use, with flags over the environment", function()
    local script = h.write(h.tmpname(".lua"), [[
local quarry = require "quarry"
quarry.configure({ pool_max = 3 })
print(quarry.settings().pool_max, quarry.settings().source.pool_max)
print(quarry.db:query_one("SELECT 41 + 1 AS n").n)
print(quarry.cache.enabled)
print(pcall(quarry.configure, {}))
]])
    local out, err, code = h.quarry("run " .. script, { DB_POOL_MAX = "9" })
    os.remove(script)
    assert.are.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal("3\tflag", lines[1])
    assert.are.equal("42", lines[2])
    assert.are.equal("true", lines[3])
    assert.matches("^false\t.*must come before the first use", lines[4])
  end)

  it("times blocks and queries into one table of timings", function()
    local script = h.write(h.tmpname(".lua"), [[
local quarry = require "quarry"
local v = quarry.timed("work", function(a, b) return a + b end, 2, 3)
quarry.db:query({ name = "named_query", sql = "SELECT 1 AS x" })
local t = quarry.timings()
print(v, t.work.count, t.named_query.count)
]])
    local out, err, code = h.quarry("run " .. script)
    os.remove(script)
    assert.are.equal(0, code, err)
    assert.are.equal("5\t1\t1\n", out)
  end)
end)
