-- src/timing.c through quarry.timed / quarry.timings.
local core = require "quarry.core"

describe("timings", function()
  it("summarises durations with percentiles within 2%", function()
    local t = core.timings_new()
    for i = 1, 1000 do t:record("work", i * 1000000) end -- 1..1000 ms
    local s = t:summary().work
    assert.are.equal(1000, s.count)
    assert.is_true(math.abs(s.total_ms - 500500) < 1)
    assert.is_true(math.abs(s.p50 - 500) / 500 < 0.02, s.p50)
    assert.is_true(math.abs(s.p95 - 950) / 950 < 0.02, s.p95)
    assert.is_true(math.abs(s.p99 - 990) / 990 < 0.02, s.p99)
    assert.are.equal(1000, s.max)
    t:reset()
    assert.is_nil(t:summary().work)
  end)

  it("times a block and returns its results, or rethrows its error", function()
    local quarry = require "quarry"
    local a, b = quarry.timed("spec.block", function(x, y) return x + y, "second" end, 2, 3)
    assert.are.equal(5, a)
    assert.are.equal("second", b)
    assert.has_error(function() quarry.timed("spec.fails", function() error("nope") end) end)
    local t = quarry.timings()
    assert.are.equal(1, t["spec.block"].count)
    assert.are.equal(1, t["spec.fails"].count)
  end)
end)
