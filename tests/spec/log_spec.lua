-- lua/quarry/log.lua and src/log.c: one line per event on stderr, as text or JSON.
local h = require "spec.helper"

local function script(text) return h.write(h.tmpname(".lua"), text) end

describe("logging", function()
  it("writes text lines with module and context", function()
    local path = script([[require("quarry").log.info("loaded", { module = "ingest", context = { rows = 12 } })]])
    local _, err, code = h.quarry("run " .. path)
    os.remove(path)
    assert.are.equal(0, code)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z info  %[ingest%] loaded rows=12\n$", err)
  end)

  it("writes JSON lines with --log-format json and respects the level", function()
    local path = script([[
local log = require("quarry").log
log.debug("hidden")
log.warn('say "hi"', { module = "x", context = { n = 1.5, s = "a b" } })
]])
    local _, err, code = h.quarry("--log-format json --log-level info run " .. path)
    os.remove(path)
    assert.are.equal(0, code)
    assert.not_matches("hidden", err)
    local line = require("cjson").decode(err)
    assert.are.equal("warn", line.level)
    assert.are.equal("x", line.module)
    assert.are.equal('say "hi"', line.msg)
    assert.are.same({ n = 1.5, s = "a b" }, line.context)
  end)
end)
