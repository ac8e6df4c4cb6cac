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
    -- README's first command: the demo, on these services
    out, err, code = h.quarry("demo", env)
    assert.are.equal(0, code, err)
    assert.matches("total: 295053.765 MWh curtailed, £13439443.69 paid, 606.112938260662 BTC (S19J_PRO)", out, 1, true)
    assert.matches("synthetic data from quarry db seed, not real curtailment (2024-03-01..2024-03-31)", out, 1, true)
    assert.matches("<html", h.read(home .. "/demo-monthly-2024-03.html") or "", 1, true)
    -- a day loaded from a file since is real data: a second demo leaves it, and says so (exit 2)
    local file = h.write(h.tmpname(".csv"), "settlement_date,settlement_period,farm_id,lead_party_name,volume,"
      .. "payment,original_price,final_price,so_flag,cadl_flag\n"
      .. "2024-03-12,20,T_REAL-1,Real Wind Ltd,-10.000,-500.00,-50.00,-50.00,true,false\n")
    _, err, code = h.quarry("ingest curtailment --dates 2024-03-12 " .. h.shell_quote(file), env)
    assert.are.equal(0, code, err)
    _, err, code = h.quarry("demo", env)
    assert.are.equal(2, code, err)
    assert.matches("would replace 1 day(s) loaded by quarry ingest curtailment (2024-03-12); the demo leaves them",
      err, 1, true)
    out = h.quarry("report daily --date 2024-03-12 --format csv", env)
    assert.matches("\nT_REAL%-1,", out)
    assert.is_nil(out:find("T_SGRWO", 1, true))
  end)

  it("runs the demo only on the embedded services, never on a database DATABASE_URL names", function()
    local before = h.db():query_one("SELECT count(*)::int AS n FROM curtailment_loaded_days").n
    local _, err, code = h.quarry("demo", { DATABASE_URL = h.database_url() }) -- the test database, named
    assert.are.equal(2, code, err)
    assert.matches("quarry demo writes synthetic data into the embedded default services, and DATABASE_URL names "
      .. "another database", err, 1, true)
    assert.are.equal(before, h.db():query_one("SELECT count(*)::int AS n FROM curtailment_loaded_days").n)
  end)

  it("has no URLs for a state folder where nothing was started", function()
    local empty = h.tmpname(".home")
    os.execute("mkdir -p " .. empty)
    assert.is_nil(services.urls({ home = empty }))
    os.execute("rm -rf " .. empty)
  end)
end)
