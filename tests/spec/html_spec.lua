-- The html format in a real browser: Debian's headless Chromium opens the
-- page, and the chart is there once it has been parsed and laid out.
local h = require "spec.helper"

local CHROMIUM = "/usr/bin/chromium"
local FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
  .. "--disable-component-update --disable-sync --user-data-dir=%s"

local ROWS = [[settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,original_price,final_price,so_flag,cadl_flag
2031-06-01,40,T_SGRWO-1,Seagreen Wind Energy Limited,-10,-50,-5,-5,true,false
2031-06-02,41,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false
]]

describe("html report in headless Chromium", function()
  setup(function()
    local db = require("quarry").db
    require("quarry.migrate").up(db)
    db:exec([[INSERT INTO bitcoin_difficulty VALUES ('2031-06-01', 100e12)
              ON CONFLICT (effective_date) DO UPDATE SET difficulty = 100e12]])
    local csv = h.write(h.tmpname(".csv"), ROWS)
    local _, err, code = h.quarry("ingest curtailment " .. csv)
    os.remove(csv)
    assert(code == 0, err)
  end)

  it("shows the chart: one bar per day of the month", function()
    assert(io.open(CHROMIUM), "chromium is not installed (scripts/install-deps.sh installs it)")
    local page = h.tmpname(".html")
    local _, err, code = h.quarry("report monthly --month 2031-06 --format html --no-cache -o " .. page)
    assert.are.equal(0, code, err)
    local profile = h.tmpname(".profile")
    local flags = FLAGS:format(profile)
    local p = io.popen(("%s %s --dump-dom file://%s 2>/dev/null"):format(CHROMIUM, flags, page))
    local dom = p:read("a")
    p:close()
    local _, bars = dom:gsub('<rect class="bar"', "")
    assert.are.equal(30, bars, "bars in the rendered DOM") -- June: every day, calm ones at zero
    assert.matches("<svg", dom)
    assert.matches("Curtailment and bitcoin, 2031%-06", dom)
    local png = h.tmpname(".png")
    os.execute(("%s %s --window-size=1000,900 --screenshot=%s file://%s >/dev/null 2>&1"):format(CHROMIUM, flags, png,
      page))
    local shot = h.read(png) or ""
    assert.is_true(#shot > 10000, "screenshot of " .. #shot .. " bytes")
    assert.are.equal("\137PNG", shot:sub(1, 4))
    os.remove(page)
    os.remove(png)
    os.execute("rm -rf " .. profile)
  end)
end)
