-- lua/quarry/services.lua: the embedded default services of a checkout.
local h = require "spec.helper"
local services = require "quarry.services"

describe("services", function()
  it("finds the checkout and the state folder, and reads the URLs the services wrote", function()
    assert.is_not_nil(io.open(services.root() .. "/lua/quarry/services.lua"))
    assert.are.equal(h.home, services.home({ home = h.home }))
    local urls = services.urls({ home = h.home })
    assert.matches("^postgresql://quarry@/quarry%?host=", urls.DATABASE_URL)
    assert.matches("^unix://.*redis%.sock$", urls.REDIS_URL)
  end)

  it("ensures running services without restarting them, and says so on status", function()
    local urls = services.ensure({ home = h.home })
    assert.are.same(services.urls({ home = h.home }), urls)
    local out, err, code = h.quarry("services status")
    assert.are.equal(0, code, err)
    assert.matches("postgresql: running", out)
    assert.matches("redis: running", out)
  end)

  it("starts, serves and stops in a state folder whose path has a space and a quote", function()
    local home = h.tmpname(" my home's")
    local env = { QUARRY_HOME = home, DATABASE_URL = "", REDIS_URL = "" }
    finally(function()
      h.quarry("services down", env)
      os.execute("rm -rf " .. h.shell_quote(home))
    end)
    local _, err, code = h.quarry("services up", env)
    assert.are.equal(0, code, err)
    local out
    out, err, code = h.quarry("db migrate", env)
    assert.are.equal(0, code, err)
    assert.matches("schema at version", out)
    out, err, code = h.quarry("report daily --date 2031-05-01 --format csv", env)
    assert.are.equal(0, code, err)
    assert.matches("^farm_id,", out)
  end)

  it("has no URLs for a state folder where nothing was started", function()
    local empty = h.tmpname(".home")
    os.execute("mkdir -p " .. empty)
    assert.is_nil(services.urls({ home = empty }))
    os.execute("rm -rf " .. empty)
  end)
end)
