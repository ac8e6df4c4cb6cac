-- lua/quarry/rules.lua: the invalidation rules as data, the dates quarry
-- takes, and what a script's value depends on. A pure module: no service.
local rules = require "quarry.rules"

describe("rules", function()
  it("validates rules, naming the entry", function()
    assert.has_error(function() rules.validate({ { table = "x", stale = { "a:{week}:*" } } }, "r.lua") end,
      "r.lua: rule 1: stale[1] uses unknown placeholder {week} (date, month, quarter, year)")
    assert.has_error(function() rules.validate({ { table = "x; drop", stale = { "a" } } }, "r.lua") end,
      "r.lua: rule 1: 'table' must be a table name")
    assert.has_error(function() rules.patterns(nil, { "2024-02-30" }) end)
    local ok, err = pcall(rules.validate, { { table = "x", stale = {} } }, "r.lua")
    assert.is_false(ok)
    assert.are.equal("usage", err.code) -- a bad definition file is bad input: exit 2
    assert.are.equal("r.lua: rule 1: 'stale' must be a non-empty list of key patterns", err.message)
    assert.are.same({ "2024-02-29" }, { rules.check_date("2024-02-29") })
    assert.is_nil(rules.check_date("2023-02-29"))
    -- the calendar's rule: month lengths, and leap years but for centuries not divisible by 400
    for _, d in ipairs({ "2100-02-28", "2024-04-30", "2024-12-31", "2024-01-31", "2004-02-29" }) do
      assert.are.equal(d, rules.check_date(d))
    end
    for _, d in ipairs({ "2100-02-29", "2024-04-31", "2024-06-31", "2024-13-01", "2024-00-10", "2024-05-00",
                         "2024-05-32", "2024-5-01", " 2024-05-01" }) do
      assert.is_nil(rules.check_date(d), d)
    end
    -- several tables at once: each stale pattern once
    local defs = { { table = "a", stale = { "m:{month}:*" } }, { table = "b", stale = { "m:{month}:*", "y:{year}:*" } },
                   { table = "c", stale = { "z:*" } } }
    assert.are.same({ "m:2024-03:*", "y:2024:*" }, rules.patterns({ "a", "b" }, { "2024-03-01", "2024-03-02" }, defs))
  end)

  it("names the quarter of a date, so a write reaches the quarter's reports", function()
    local defs = { { table = "a", stale = { "q:{quarter}:*" } } }
    assert.are.same({ "q:2024-Q1:*", "q:2024-Q2:*", "q:2024-Q4:*" },
      rules.patterns("a", { "2024-01-01", "2024-03-31", "2024-04-01", "2024-12-31" }, defs))
    assert.truthy(table.concat(rules.patterns("curtailment_records", { "2024-08-14" }), " ")
      :find("quarterly_mining:2024-Q3:*", 1, true))
  end)

  it("turns a dependency on dates into the fewest groups the writes bump", function()
    assert.are.same({ "data:2024" }, rules.depends_groups({ from = "2024-01-01", to = "2024-12-31" }))
    assert.are.same({ "data:2024-02", "data:2024-03-01" }, rules.depends_groups({ from = "2024-02-01", to = "2024-03-01" }))
    assert.are.same({ "data:2023-12-31", "data:2024", "data:2025-01" },
      rules.depends_groups({ from = "2023-12-31", to = "2025-01-31" }))
    assert.are.same({ "data:all" }, rules.depends_groups("all"))
    assert.are.same({ "data:2024-03-01", "data:2024-05", "data:2025" },
      rules.depends_groups({ dates = { "2024-03-01" }, months = { "2024-05" }, years = { "2025" } }))
    assert.has_error(function() rules.depends_groups({ from = "2024-03-02", to = "2024-03-01" }) end)
    assert.has_error(function() rules.depends_groups({ months = { "2024-3" } }) end)
  end)

  it("makes every rule's write also bump the data: groups of that day, month and year", function()
    local p = rules.patterns("curtailment_records", { "2024-03-01" })
    local set = {}
    for _, x in ipairs(p) do set[x] = true end
    for _, want in ipairs({ "data:2024-03-01:*", "data:2024-03:*", "data:2024:*", "data:all:*" }) do
      assert.is_true(set[want], want)
    end
  end)

  it("takes dates of 2001..2100 only", function()
    assert.is_nil(rules.check_date("2000-12-31"))
    assert.is_nil(rules.check_date("2101-01-01"))
    assert.are.equal("2001-01-01", rules.check_date("2001-01-01"))
  end)

  it("reads numbers as people write them, not as Lua's tonumber does", function()
    for s, n in pairs({ ["12"] = 12, ["-3"] = -3, ["1.5"] = 1.5, [".5"] = 0.5, ["2."] = 2, ["1e3"] = 1000,
                        ["2.5E-1"] = 0.25 }) do
      assert.are.equal(n, rules.decimal(s), s)
    end
    for _, s in ipairs({ "0x10", " 5", "5\t", "inf", "nan", "1e", "e3", "+-1", "", "1,5", "1.2.3" }) do
      assert.is_nil(rules.decimal(s), s)
      assert.is_nil(rules.integer(s), s)
    end
    assert.are.equal(42, rules.integer("42"))
    assert.are.equal(7, rules.integer(7))
    assert.is_nil(rules.integer("1.5"))
    assert.is_nil(rules.integer("1e3"))
    assert.is_nil(rules.integer("99999999999999999999"))
  end)
end)
