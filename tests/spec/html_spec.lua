-- The html format in a real browser: Debian's headless Chromium lays out
-- every shipped report's page at a desktop and at a phone width, and a
-- script in the page checks what a reader sees: every text element inside
-- its chart's box, x labels apart, round tick steps that cover the data,
-- text at least 9 px high, no chart wider than the window.
local h = require "spec.helper"
local cjson = require "cjson"

local CHROMIUM = "/usr/bin/chromium"
local FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
  .. "--disable-component-update --disable-sync --user-data-dir=%s --window-size=%d,%d"

-- Shipped reports and the params that give each a chart worth checking; a
-- new plugin without an entry here fails the last test.
local CASES = {
  { "daily", "--date 2031-06-10" },           -- 30 farms: long x labels
  { "daily", "--date 2031-06-03" },           -- tiny magnitudes: ticks of 0.002 MWh
  { "monthly", "--month 2031-06" },           -- 169,219.678 MWh in one day
  { "yearly", "--year 2031" },
  { "farms", "--month 2031-06 --by lead_party" }, -- names longer than a bar
  { "farms", "--month 2031-06" },
  { "periods", "--date 2031-06-10" },
  { "miners", "--month 2031-06" },
  { "integrity", "--month 2031-06" },         -- no chart: the page still lays out
  { "value", "--month 2031-06" },             -- bars above and below zero
}

local FARMS = { { "T_SGRWO-1", "Seagreen Wind Energy Limited" }, { "T_MOWEO-1", "Moray Offshore Wind East Ltd" },
  { "T_VKNGW-1", "Viking Energy Wind Farm LLP" }, { "T_BEATO-1", "Beatrice Offshore Windfarm Ltd" },
  { "T_DOREW-1", "Dorenell Windfarm Limited" }, { "T_NNGAO-1", "Neart Na Gaoithe Offshore Wind" } }

-- 2031-06-10: 30 farms x 3 periods, 169,219.678 MWh in all; 2031-06-03:
-- 0.01 MWh; a few ordinary days between.
local function rows()
  local out = { "settlement_date,settlement_period,farm_id,lead_party_name,volume,payment,original_price,"
    .. "final_price,so_flag,cadl_flag" }
  local left = 169219.678
  for f = 1, 30 do
    local farm, party = FARMS[(f - 1) % #FARMS + 1][1]:gsub("%-1$", "-" .. f), FARMS[(f - 1) % #FARMS + 1][2]
    for period = 20, 22 do
      local v = (f == 30 and period == 22) and left or 1880
      left = left - v
      out[#out + 1] = ("2031-06-10,%d,%s,%s,-%s,-%s,-50,-50,true,false"):format(period, farm, party,
        ("%.3f"):format(v), ("%.3f"):format(v * 50))
    end
  end
  out[#out + 1] = "2031-06-03,40,T_SGRWO-1,Seagreen Wind Energy Limited,-0.01,-0.5,-50,-50,true,false"
  out[#out + 1] = "2031-06-04,41,T_DOREW-1,Dorenell Windfarm Limited,-20,-1600,-80,-80,true,false"
  out[#out + 1] = "2031-06-21,12,T_MOWEO-1,Moray Offshore Wind East Ltd,-350.5,-14020,-40,-40,true,false"
  return table.concat(out, "\n") .. "\n"
end

-- Run in the page once laid out; writes its findings into the DOM.
local CHECK = [[
<script>
(function () {
  var out = { charts: 0, texts: 0, problems: [], bars: 0, ticks: [] };
  var width = document.documentElement.clientWidth;
  function bad(msg) { out.problems.push(msg); }
  document.querySelectorAll("svg").forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    if (box.width === 0) return; // the other width's chart, hidden by the CSS
    out.charts++;
    if (box.right > width + 0.5) bad("chart " + box.right + "px wide in a " + width + "px window");
    var vb = svg.viewBox.baseVal, scale = box.width / vb.width;
    var labels = [];
    svg.querySelectorAll("text").forEach(function (t) {
      out.texts++;
      var r = t.getBoundingClientRect(), name = JSON.stringify(t.textContent);
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 ||
          r.bottom > box.bottom + 0.5) bad("text " + name + " outside the chart");
      if (!t.hasAttribute("transform")) {
        var b = t.getBBox();
        if (b.x < vb.x || b.y < vb.y || b.x + b.width > vb.x + vb.width || b.y + b.height > vb.y + vb.height)
          bad("getBBox of " + name + " outside the viewBox");
      }
      if (parseFloat(t.getAttribute("font-size")) * scale < 9) bad("text " + name + " under 9px on screen");
      if (t.getAttribute("class") === "xlabel") labels.push({ r: r, t: t, size: parseFloat(t.getAttribute("font-size")) * scale });
    });
    for (var i = 1; i < labels.length; i++) {
      var a = labels[i - 1].r, b = labels[i].r;
      if (labels[i].t.hasAttribute("transform")) { // 45 degrees: parallel lines of text, 1.2 font heights apart
        if ((b.right - a.right) * Math.SQRT1_2 < labels[i].size * 1.2) bad("rotated x labels " + i + " overlap");
      } else if (a.right > b.left + 0.5 && a.bottom > b.top + 0.5 && b.bottom > a.top + 0.5) {
        bad("x labels " + i + " overlap");
      }
    }
    var ticks = [];
    svg.querySelectorAll("text.tick").forEach(function (t) { ticks.push(t.textContent); });
    out.ticks.push(ticks);
    var top = 0;
    svg.querySelectorAll("rect.bar").forEach(function (r) {
      out.bars++;
      var v = parseFloat(r.querySelector("title").textContent.split(": ")[1].replace(/,/g, ""));
      if (v > top) top = v;
    });
    var nums = ticks.map(function (s) { return parseFloat(s.replace(/,/g, "")); });
    if (nums[nums.length - 1] < top) bad("top tick " + ticks[ticks.length - 1] + " below the largest bar " + top);
    var step = nums[1] - nums[0], mant = step / Math.pow(10, Math.floor(Math.log10(step) + 1e-9));
    if ([1, 2, 5].every(function (m) { return Math.abs(mant - m) > 1e-6; })) bad("tick step " + step + " not round");
    for (var k = 2; k < nums.length; k++)
      if (Math.abs(nums[k] - nums[k - 1] - step) > step * 1e-6) bad("uneven ticks " + ticks.join(" "));
  });
  var pre = document.createElement("pre");
  pre.id = "quarry-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
</body>]]

local function browse(page, w, hgt)
  local profile = h.tmpname(".profile")
  local p = io.popen(("%s %s --dump-dom file://%s 2>/dev/null"):format(CHROMIUM, FLAGS:format(profile, w, hgt), page))
  local dom = p:read("a")
  p:close()
  os.execute("rm -rf " .. profile)
  local found = dom:match('<pre id="quarry%-check">(.-)</pre>')
  assert(found, "the check did not run in " .. page)
  return cjson.decode((found:gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&")))
end

describe("html report in headless Chromium", function()
  setup(function()
    assert(io.open(CHROMIUM), "chromium is not installed (scripts/install-deps.sh installs it)")
    local db = require("quarry").db
    require("quarry.migrate").up(db)
    db:exec([[INSERT INTO bitcoin_difficulty VALUES ('2031-06-01', 100e12)
              ON CONFLICT (effective_date) DO UPDATE SET difficulty = 100e12]])
    local csv = h.write(h.tmpname(".csv"), rows())
    local _, err, code = h.quarry("ingest curtailment " .. csv)
    os.remove(csv)
    assert(code == 0, err)
    db:exec([[INSERT INTO bitcoin_prices (price_date, gbp_per_btc, source)
      SELECT d, 50000 + extract(day FROM d) * 1000, 'spec' FROM generate_series('2031-06-01'::date, '2031-06-30', '1 day') d
      ON CONFLICT (price_date) DO UPDATE SET gbp_per_btc = EXCLUDED.gbp_per_btc]])
  end)

  for _, case in ipairs(CASES) do
    it(("lays out %s %s at 1400x900 and 390x844 with every label inside"):format(case[1], case[2]), function()
      local html, err, code = h.quarry(("report %s %s --format html --no-cache"):format(case[1], case[2]))
      assert.are.equal(0, code, err)
      local page = h.write(h.tmpname(".html"), (html:gsub("</body>", function() return CHECK end)))
      for _, size in ipairs({ { 1400, 900 }, { 390, 844 } }) do
        local seen = browse(page, size[1], size[2])
        assert.are.same({}, seen.problems, ("%s %s at %dpx"):format(case[1], case[2], size[1]))
        if case[1] ~= "integrity" then
          assert.are.equal(1, seen.charts, "one chart shown at " .. size[1] .. "px")
          assert.is_true(seen.bars > 0 and seen.texts > 5)
        end
      end
      os.remove(page)
    end)
  end

  it("ticks round steps at any magnitude: 169,219.678 MWh and 0.01 MWh", function()
    local html = h.quarry("report periods --date 2031-06-10 --format html --no-cache")
    assert.matches(">60,000</text>", html, 1, true) -- 56,406.559 MWh in period 22
    local tiny = h.quarry("report daily --date 2031-06-03 --format html --no-cache")
    assert.matches('class="tick"[^>]*>0.002</text>', tiny)
    assert.matches('class="axis%-title"[^>]*>curtailed %(MWh%)</text>', tiny)
  end)

  it("shows one bar per day of the month, calm days at zero", function()
    local page = h.write(h.tmpname(".html"), (h.quarry("report monthly --month 2031-06 --format html --no-cache")
      :gsub("</body>", function() return CHECK end)))
    assert.are.equal(30, browse(page, 1400, 900).bars)
    os.remove(page)
  end)

  it("has a case for every shipped report", function()
    local covered = {}
    for _, case in ipairs(CASES) do covered[case[1]] = true end
    for file in io.popen("ls plugins"):lines() do
      local name = file:match("^(.-)%.lua$")
      if name then assert.is_true(covered[name], "no browser case for plugins/" .. file) end
    end
  end)

  it("takes a screenshot a person can look at", function()
    local page = h.write(h.tmpname(".html"), (h.quarry("report monthly --month 2031-06 --format html --no-cache")))
    local png, profile = h.tmpname(".png"), h.tmpname(".profile")
    os.execute(("%s %s --screenshot=%s file://%s >/dev/null 2>&1"):format(CHROMIUM, FLAGS:format(profile, 1400, 900),
      png, page))
    local shot = h.read(png) or ""
    assert.is_true(#shot > 10000, "screenshot of " .. #shot .. " bytes")
    assert.are.equal("\137PNG", shot:sub(1, 4))
    os.remove(page)
    os.remove(png)
    os.execute("rm -rf " .. profile)
  end)
end)
