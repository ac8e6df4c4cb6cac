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

  it("has no URLs for a state folder where nothing was started", function()
    local empty = h.tmpname(".home")
    os.execute("mkdir -p " .. empty)
    assert.is_nil(services.urls({ home = empty }))
    os.execute("rm -rf " .. empty)
  end)
end)
