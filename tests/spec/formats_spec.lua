-- lua/quarry/formats.lua: what each output format guarantees.
local formats = require "quarry.formats"

local result = {
  name = "t", title = "Test", params = { month = "2031-05" },
  fields = { { name = "key", type = "text" }, { name = "mwh", type = "numeric" }, { name = "n", type = "int8" } },
  rows = { { key = 'a, "quoted"\nname', mwh = "1234567.8915", n = 3 }, { key = "plain", mwh = "-0.0001", n = 1000000 } },
  chart = { x = "key", y = "mwh" },
}

describe("formats", function()
  it("rounds decimal strings exactly, half away from zero", function()
    assert.are.equal("1234567.892", formats.round_decimal("1234567.8915", 3))
    assert.are.equal("10.00", formats.round_decimal("9.995", 2))
    assert.are.equal("-1.0", formats.round_decimal("-0.95", 1))
    assert.are.equal("0.000", formats.round_decimal("-0.0001", 3))
    assert.are.equal("123456789012345678901234567890.12", formats.round_decimal("123456789012345678901234567890.1249", 2))
    assert.are.equal("1,234,567.89", formats.group_thousands("1234567.89"))
    assert.are.equal("-999", formats.group_thousands("-999"))
  end)

  it("writes RFC 4180 csv with exact numbers", function()
    local out = formats.csv(result)
    assert.are.equal('key,mwh,n\r\n"a, ""quoted""\nname",1234567.8915,3\r\nplain,-0.0001,1000000\r\n', out)
  end)

  it("writes tsv for spreadsheets: tabs, exact digits, no value breaking a line", function()
    local out = formats.tsv(result)
    assert.are.equal('key\tmwh\tn\na, "quoted" name\t1234567.8915\t3\nplain\t-0.0001\t1000000\n', out)
    assert.are.same({ "table", "csv", "tsv", "json", "html" }, formats.NAMES) -- what --format takes
  end)

  it("keeps a spreadsheet from running a text cell as a formula, in csv and tsv, and leaves numbers alone", function()
    local hostile = {
      name = "h", title = "H",
      fields = { { name = "party", type = "text" }, { name = "mwh", type = "numeric" } },
      rows = { { party = '=HYPERLINK("http://x.invalid","open")', mwh = "-12.5" },
               { party = "+44 20 7946 0000", mwh = "1e-05" }, { party = "-2+3", mwh = "-0" },
               { party = "@SUM(A1:A9)", mwh = "7" }, { party = "\t=1+1", mwh = "=1+1" },
               { party = "Ørsted = wind", mwh = "NaN" } },
    }
    assert.are.equal('party,mwh\r\n'
      .. '"\'=HYPERLINK(""http://x.invalid"",""open"")",-12.5\r\n'
      .. "'+44 20 7946 0000,1e-05\r\n'-2+3,-0\r\n'@SUM(A1:A9),7\r\n'\t=1+1,'=1+1\r\n"
      .. "Ørsted = wind,NaN\r\n", formats.csv(hostile))
    assert.are.equal("party\tmwh\n'=HYPERLINK(\"http://x.invalid\",\"open\")\t-12.5\n"
      .. "'+44 20 7946 0000\t1e-05\n'-2+3\t-0\n'@SUM(A1:A9)\t7\n' =1+1\t'=1+1\nØrsted = wind\tNaN\n",
      formats.tsv(hostile))
  end)

  it("shows control characters in a table as escapes, so a value cannot drive the terminal", function()
    local out = formats.table({
      title = "T\27]0;owned\7", fields = { { name = "party", label = "party\27[2J", type = "text" } },
      rows = { { party = "Evil\27[31mRed\nLine\194\155K" }, { party = "Ørsted" } },
    })
    assert.is_nil(out:find("[\27\7]"))
    assert.is_nil(out:find("\194\155", 1, true))
    assert.matches("Evil\\x1b[31mRed\\x0aLine\\u{9b}K", out, 1, true)
    assert.matches("party\\x1b[2J", out, 1, true)
    assert.matches("Ørsted", out, 1, true)
    assert.are.equal(5, select(2, out:gsub("\n", ""))) -- title, head, rule, two rows: one line each
  end)

  it("writes json with numeric columns as exact, unquoted numbers", function()
    local out = formats.json(result)
    assert.matches('"mwh":1234567.8915', out, 1, true)
    assert.matches('"mwh":-0.0001', out, 1, true)
    assert.matches('"key":"a, \\"quoted\\"\\nname"', out, 1, true)
    local decoded = require("cjson").decode(out)
    assert.are.equal(1000000, decoded.rows[2].n)
  end)

  it("writes json that quotes what is not a number, escapes what must be, and keeps every value's place", function()
    local odd = {
      name = "o", title = "T",
      fields = { { name = "id", type = "text", column = "farm" }, { name = "v", type = "numeric", unit = "MWh" },
                 { name = "x" } },
      rows = { { id = "123", v = "1.50", x = 0.1 }, { id = 'q"\\\1', v = "NaN", x = { 2, 1 } }, { v = "-7" },
               { id = "", x = true } },
      totals = { v = "1.2e3" }, footer = "tab\t",
    }
    assert.are.equal('{"schema":"quarry.report/1","report":"o","title":"T","params":{},"fields":['
      .. '{"name":"farm","type":"text","unit":null,"label":"farm"},'
      .. '{"name":"v","type":"numeric","unit":"MWh","label":"v"},'
      .. '{"name":"x","type":"unknown","unit":null,"label":"x"}],"rows":['
      .. '{"farm":"123","v":1.50,"x":0.1},\n'
      .. '{"farm":"q\\"\\\\\\u0001","v":"NaN","x":[2,1]},\n'
      .. '{"farm":null,"v":-7,"x":null},\n'
      .. '{"farm":"","v":null,"x":true}],'
      .. '"totals":{"farm":null,"v":"1.2e3","x":null},"footer":"tab\\t"}\n', formats.json(odd))
    -- the test the writer asks of each value: 0 number text, 1 quotable as it is, 2 to escape
    local kind = require("quarry.core").json_kind
    for s, want in pairs({ ["12"] = 0, ["-1.50"] = 0, ["1."] = 0, ["007"] = 0, ["-"] = 1, [""] = 1, ["1e5"] = 1,
                           [".5"] = 1, ["1.2.3"] = 1, ["+1"] = 1, [" 1"] = 1, ["1 "] = 1, ["Ynys Môn"] = 1,
                           ['a"b'] = 2, ["a\\b"] = 2, ["x\n"] = 2, ["\127"] = 2, ["1\0"] = 2, ["\31"] = 2 }) do
      assert.are.equal(want, kind(s), s)
    end
    -- the rows are written in C: each value as formats.json_value writes it
    local objects, json_value = require("quarry.core").json_objects, require("quarry.formats").json_value
    for _, v in ipairs({ "x", "1.50", "-7", "1e5", 'tab\t"q"\\ \n\r\1\127 end', "Ynys Môn", "", 0, -12, 2 ^ 53,
                         0.1 + 0.2, 1 / 3, 1e20, -0.0, 0 / 0, math.huge, -math.huge, true, false, { 2, 1 },
                         { b = 1, a = "x" } }) do
      for _, numeric in ipairs({ false, true }) do
        assert.are.equal('{"v":' .. json_value(v, numeric) .. "}",
          objects({ { v = v } }, { "v" }, { '{"v":' }, { numeric }, json_value, ""), tostring(v))
      end
    end
    assert.are.equal("{}|{}", objects({ {}, {} }, {}, {}, {}, json_value, "|"))
    assert.are.equal("", objects({}, { "v" }, { '{"v":' }, { false }, json_value, ","))
    local empty = formats.json({ name = "e", fields = {}, rows = { {}, {} } })
    assert.matches('"rows":[{},\n{}],"totals":null', empty, 1, true)
    assert.is_table(require("cjson").decode(empty))
  end)

  it("aligns a table for the terminal, with thousands separators", function()
    local out = formats.table({ fields = result.fields, rows = { { key = "x", mwh = "1234567.8915", n = 3 } } })
    assert.are.equal("key             mwh  n\n---  --------------  -\nx    1,234,567.8915  3\n", out)
    -- rounded only where the report declares decimals; small figures keep their digits
    out = formats.table({ fields = result.fields, rows = { { key = "x", mwh = "0.0025", n = 3 } },
      decimals = {} })
    assert.matches("0%.0025", out)
    out = formats.table({ fields = result.fields, rows = { { key = "x", mwh = "1234567.8915", n = 3 } },
      decimals = { mwh = 1 } })
    assert.matches("1,234,567%.9", out)
  end)

  it("makes one self-contained html page, escaped, with an SVG chart", function()
    local out = formats.html(result)
    assert.matches("<svg", out, 1, true)
    assert.matches("a, &quot;quoted&quot;", out, 1, true)
    assert.not_matches("<script", out)
    assert.not_matches("https?://[^\"]*%.js", out)
    -- a footer of two lines (the totals, the days with no data) shows as two, escaped
    local two = {}
    for k, v in pairs(result) do two[k] = v end
    two.footer = "total: 5 MWh\nno data loaded for 2031-05-03 <here>"
    assert.matches("total: 5 MWh<br>\nno data loaded for 2031-05-03 &lt;here&gt;", formats.html(two), 1, true)
  end)
end)
