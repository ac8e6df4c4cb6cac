-- lua/quarry/params.lua: the param types of reports, checked without any
-- service (a pure module).
local params = require "quarry.params"

local plugin = { name = "t", params = {
  month = { type = "month", required = true },
  min_mwh = { type = "integer", min = 0, max = 5000, default = 0 },
  unit = { type = "choice", choices = { "mwh", "gwh" }, default = "mwh" },
  farm = { type = "farm" },
} }

describe("params", function()
  it("checks raw strings into values, with defaults", function()
    assert.are.same({ month = "2024-03", min_mwh = 12, unit = "gwh" },
      params.check(plugin, { month = "2024-03", min_mwh = "12", unit = "gwh" }))
    assert.are.same({ month = "2024-03", min_mwh = 0, unit = "mwh" }, params.check(plugin, { month = "2024-03" }))
  end)

  it("names the flag in every refusal, as a usage error", function()
    local cases = {
      { {}, "report t needs %-%-month" },
      { { month = "2024-13" }, "%-%-month '2024%-13' is not a month" },
      { { month = "0000-01" }, "is not a month" },
      { { month = "2024-03", min_mwh = "-1" }, "%-%-min%-mwh '%-1' is out of range %(0..5000%)" },
      { { month = "2024-03", min_mwh = "1.5" }, "is not an integer" },
      { { month = "2024-03", min_mwh = "0x10" }, "'0x10' is not an integer" },
      { { month = "2024-03", min_mwh = "1e3" }, "'1e3' is not an integer" },
      { { month = "2024-03", min_mwh = " 5" }, "' 5' is not an integer" },
      { { month = "2024-03", unit = "tonnes" }, "%-%-unit 'tonnes': expected one of mwh, gwh" },
      { { month = "2024-03", farm = "x'; drop" }, "is not a BMU id" },
      { { month = "2024-03", colour = "red" }, "report t takes no %-%-colour" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(params.check, plugin, c[1])
      assert.is_false(ok)
      assert.are.equal("usage", err.code)
      assert.matches(c[2], err.message)
    end
  end)

  it("takes one period: two of different kinds are refused, and a default period gives way", function()
    local periods = { name = "p", params = { date = { type = "date" }, month = { type = "month" },
      year = { type = "year", default = "2024" }, versus = { type = "month" } } }
    for _, raw in ipairs({ { month = "2024-03", date = "2024-05-01" }, { year = "2023", date = "2024-05-01" } }) do
      local ok, err = pcall(params.check, periods, raw)
      assert.is_false(ok)
      assert.are.equal("usage", err.code)
      assert.matches("give one period: %-%-date '2024%-05%-01' and %-%-%a+ '[%d-]+' are two "
        .. "%(%-%-date, %-%-month, %-%-versus or %-%-year%)", err.message)
    end
    local p = params.check(periods, { month = "2024-03" }) -- not the defaulted year
    assert.are.same({ month = "2024-03" }, p)
    assert.are.same({ "2024-03-01", "2024-03-31" }, { params.range(p, periods.params) })
    assert.are.same({ year = "2024" }, params.check(periods, {}))
    -- two of one kind (a comparison) are the plugin's to read; the range is the same every time
    p = params.check(periods, { month = "2024-03", versus = "2023-03" })
    for _ = 1, 20 do assert.are.same({ "2024-03-01", "2024-03-31" }, { params.range(p, periods.params) }) end
  end)

  it("gives the dates a period covers and its cache family", function()
    assert.are.same({ "2024-02-01", "2024-02-29" }, { params.range({ month = "2024-02" }) })
    assert.are.same({ "2024-01-01", "2024-12-31" }, { params.range({ year = "2024" }) })
    assert.are.same({ "2024-03-31", "2024-03-31" }, { params.range({ date = "2024-03-31", year = "2024" }) })
    assert.is_nil(params.range({ farm = "T_X" }))
    assert.are.equal("monthly_mining:2024-03", params.family({ month = "2024-03", unit = "mwh" }))
    assert.are.equal("report", params.family({}))
    -- by type, whatever the param is called
    local specs = { period = { type = "month" }, day = { type = "date" } }
    assert.are.same({ "2024-03-01", "2024-03-31" }, { params.range({ period = "2024-03" }, specs) })
    assert.are.equal("daily_mining:2024-03-02", params.family({ period = "2024-03", day = "2024-03-02" }, specs))
  end)

  it("says what is wrong with a declaration, and gives each flag its help", function()
    assert.is_nil(params.problem("x", { type = "date" }))
    assert.matches("needs a type", select(2, params.problem("x", { type = "weekday" })))
    assert.matches("needs 'choices'", select(2, params.problem("x", { type = "choice" })))
    assert.are.equal(".min", params.problem("x", { type = "integer", min = 0.5 }))
    assert.are.equal("An integer (0..5000).", params.help(plugin.params.min_mwh))
    assert.are.equal("One of: mwh, gwh.", params.help(plugin.params.unit))
    assert.are.equal("--min-mwh", params.flag("min_mwh"))
  end)
end)
