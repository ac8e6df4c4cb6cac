-- quarry.chart without a browser: the tick arithmetic and the layout
-- decisions (html_spec checks the drawing in Chromium).
local chart = require "quarry.chart"

describe("chart ticks", function()
  local function labels(lo, hi)
    local t = chart.ticks(lo, hi, 5)
    local out = {}
    for i, v in ipairs(t.values) do out[i] = chart.tick_label(v, t.decimals) end
    return out, t
  end

  it("steps of 1, 2 or 5 times a power of ten that cover the data", function()
    assert.are.same({ "0", "50,000", "100,000", "150,000", "200,000" }, (labels(0, 169219.678)))
    assert.are.same({ "0.000", "0.002", "0.004", "0.006", "0.008", "0.010" }, (labels(0, 0.01)))
    assert.are.same({ "0", "20", "40", "60", "80", "100" }, (labels(0, 85.2)))
    assert.are.same({ "0.0", "0.5", "1.0", "1.5", "2.0", "2.5" }, (labels(0, 2.39)))
  end)

  it("always includes zero, and negative values below it", function()
    local l, t = labels(-420, 1000)
    assert.are.same({ "-500", "0", "500", "1,000" }, l)
    assert.is_true(t.lo <= -420 and t.hi >= 1000)
    assert.are.same({ "0.0", "0.2", "0.4", "0.6", "0.8", "1.0" }, (labels(0, 0))) -- a calm month
  end)

  it("never prints -0", function()
    assert.are.equal("0.00", chart.tick_label(-0.0, 2))
    assert.are.equal("0", chart.tick_label(-1e-12, 0))
  end)
end)

describe("chart svg", function()
  local fields = { { name = "key", type = "text", label = "farm_id" },
                   { name = "curtailed_mwh", type = "numeric", unit = "MWh" } }

  it("draws nothing without rows or a chart", function()
    assert.are.equal("", chart.svg({ fields = fields, rows = {}, chart = { x = "key", y = "curtailed_mwh" } }))
    assert.are.equal("", chart.svg({ fields = fields, rows = { { key = "a", curtailed_mwh = "1" } } }))
  end)

  it("keeps every name on a category axis, turning labels that do not fit", function()
    local rows = {}
    for i = 1, 20 do rows[i] = { key = ("Some Long Lead Party Name %02d Ltd"):format(i), curtailed_mwh = i } end
    local svg = chart.svg({ fields = fields, rows = rows, chart = { x = "key", y = "curtailed_mwh" } })
    local _, n = svg:gsub('class="xlabel"', "")
    assert.are.equal(20, n)
    assert.matches('rotate%(%-45', svg)
    assert.matches(">curtailed %(MWh%) by farm_id<", svg)
    assert.matches(">Some Long Lead Party Na…<", svg, 1, true) -- 24 characters; the tooltip keeps all
  end)

  it("labels a time axis every few bars, upright", function()
    local rows = {}
    for d = 1, 31 do rows[d] = { key = ("2024-03-%02d"):format(d), curtailed_mwh = d } end
    local svg = chart.svg({ fields = { { name = "key", type = "date", label = "settlement_date" }, fields[2] },
                            rows = rows, chart = { x = "key", y = "curtailed_mwh" } })
    local _, n = svg:gsub('class="xlabel"', "")
    assert.is_true(n > 4 and n < 31, n .. " labels")
    assert.matches(">1 Mar</text>", svg, 1, true)
    assert.not_matches("rotate%(%-45", svg)
  end)
end)
