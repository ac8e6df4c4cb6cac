-- lua/quarry/config.lua: flags, then environment, then defaults; masking.
local config = require "quarry.config"

local function env(t) return function(k) return t[k] end end

describe("config.resolve", function()
  it("uses the seed's defaults", function()
    local c = config.resolve({}, env({}))
    assert.are.equal(20, c.pool_max)
    assert.are.equal(30000, c.idle_timeout_ms)
    assert.are.equal(15000, c.connect_timeout_ms)
    assert.is_true(c.embedded_db)
    assert.is_true(c.embedded_redis)
  end)

  it("prefers flags over the environment over defaults", function()
    local e = env({ DATABASE_URL = "postgresql://env/db", DB_POOL_MAX = "7" })
    local c = config.resolve({}, e)
    assert.are.equal("postgresql://env/db", c.database_url)
    assert.are.equal(7, c.pool_max)
    assert.are.equal("DB_POOL_MAX", c.source.pool_max)
    c = config.resolve({ database_url = "postgresql://flag/db", pool_max = 3 }, e)
    assert.are.equal("postgresql://flag/db", c.database_url)
    assert.are.equal(3, c.pool_max)
    assert.is_false(c.embedded_db)
  end)

  it("leaves the database to libpq's PG* variables when they are set", function()
    local c = config.resolve({}, env({ PGHOST = "/var/run/postgresql" }))
    assert.is_nil(c.database_url)
    assert.is_false(c.embedded_db)
  end)

  it("treats an empty variable as unset", function()
    assert.is_true(config.resolve({}, env({ DATABASE_URL = "" })).embedded_db)
  end)

  it("refuses malformed numbers with a usage error naming the variable", function()
    for _, bad in ipairs({ "abc", "0", "-5", "1.5", "20; DROP", "0x10", "2e1" }) do
      local ok, err = pcall(config.resolve, {}, env({ DB_POOL_MAX = bad }))
      assert.is_false(ok)
      assert.are.equal("usage", err.code)
      assert.matches("DB_POOL_MAX", err.message)
    end
    local ok, err = pcall(config.resolve, {}, env({ QUARRY_CACHE = "maybe" }))
    assert.is_false(ok)
    assert.matches("QUARRY_CACHE", err.message)
    -- 0 is a lock wait's "no limit", not a pool of none; below it, refused
    for _, bad in ipairs({ "-1", "soon", "1.5" }) do
      ok, err = pcall(config.resolve, {}, env({ DB_LOCK_WAIT = bad }))
      assert.is_false(ok)
      assert.are.equal("usage", err.code)
      assert.matches("DB_LOCK_WAIT", err.message)
    end
    assert.are.equal(0, config.resolve({}, env({ DB_LOCK_WAIT = "0" })).lock_wait_ms)
  end)
end)

describe("config.mask", function()
  it("hides passwords in URLs and conninfo strings", function()
    assert.are.equal("postgresql://user:***@host:5432/db", config.mask("postgresql://user:s3cr3t@host:5432/db"))
    assert.are.equal("redis://:***@host:6379/0", config.mask("redis://:hunter2@host:6379/0"))
    assert.are.equal("postgresql://host/db?password=***&sslmode=require",
      config.mask("postgresql://host/db?password=pw&sslmode=require"))
    assert.are.equal("host=x password=*** user=y", config.mask("host=x password=pw user=y"))
    assert.are.equal("host=x password=*** user=y", config.mask("host=x password='p w' user=y"))
    assert.are.equal("postgresql://user@host/db", config.mask("postgresql://user@host/db"))
    assert.are.equal("unix:///tmp/redis.sock", config.mask("unix:///tmp/redis.sock"))
  end)
end)
