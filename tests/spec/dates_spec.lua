-- lua/quarry/dates.lua: calendar arithmetic that reads no time zone, and the
-- modules that count days with it, run where the local time is far from UTC.
local h = require "spec.helper"
local dates = require "quarry.dates"

describe("dates", function()
  it("counts days by the calendar: leap years, month ends, weekdays, round trips", function()
    assert.are.equal(0, dates.day_number("1970-01-01"))
    assert.are.equal(19782, dates.day_number("2024-02-29"))
    assert.are.equal(-1, dates.day_number("1969-12-31"))
    for n = dates.day_number("1999-12-25"), dates.day_number("2101-01-05") do
      local d = dates.date_of(n)
      assert.are.equal(n, dates.day_number(d), d)
    end
    assert.are.same({ "2024-02-28", "2024-02-29", "2024-03-01" }, dates.days("2024-02-28", "2024-03-01"))
    assert.are.same({ "2100-02-28", "2100-03-01" }, dates.days("2100-02-28", "2100-03-01"))
    assert.are.same({ "2024-12-31", "2025-01-01" }, dates.days("2024-12-31", "2025-01-01"))
    assert.are.same({}, dates.days("2024-03-02", "2024-03-01"))
    assert.are.equal("2024-02-29", dates.month_end("2024-02"))
    assert.are.equal("2023-02-28", dates.month_end("2023-02"))
    assert.are.equal("2000-02-29", dates.month_end("2000-02"))
    assert.are.equal("2024-04-30", dates.month_end("2024-04"))
    assert.are.equal(4, dates.weekday("1970-01-01")) -- a Thursday
    assert.are.equal(0, dates.weekday("2024-03-31")) -- a Sunday
    assert.are.equal(1704067200, dates.epoch("2024-01-01"))
  end)

  it("gives the clock-change days of Europe/London their 46 and 50 periods", function()
    local changes = { ["2022-03-27"] = 46, ["2022-10-30"] = 50, ["2023-03-26"] = 46, ["2023-10-29"] = 50,
                      ["2024-03-31"] = 46, ["2024-10-27"] = 50, ["2025-03-30"] = 46, ["2025-10-26"] = 50 }
    for _, d in ipairs(dates.days("2022-01-01", "2025-12-31")) do
      assert.are.equal(changes[d] or 48, dates.periods_in_day(d), d)
    end
  end)

  it("gives the same days, months and periods whatever the local time zone", function()
    -- what fetch, the report params and the seed count, printed from a quarry process
    local script = h.write(h.tmpname(".lua"), [[
local fetch, params, elexon, seed = require "quarry.fetch", require "quarry.params", require "quarry.elexon",
  require "quarry.seed"
local from, to = params.range({ month = "2024-02" })
print(table.concat(fetch.days_between("2024-03-30", "2024-04-01"), " "), from, to,
  elexon.periods_in_day("2024-03-31"), elexon.periods_in_day("2024-10-27"), seed.periods_in_day("2025-10-26"),
  table.concat(seed.dates("2024-02-28", "2024-03-01"), " "))]])
    local want = "2024-03-30 2024-03-31 2024-04-01\t2024-02-01\t2024-02-29\t46\t50\t50\t2024-02-28 2024-02-29 2024-03-01\n"
    -- east and west of UTC by more than noon's margin: os.time had them a day off
    for _, tz in ipairs({ "UTC", "Europe/London", "Pacific/Auckland", "Pacific/Kiritimati", "Etc/GMT+12" }) do
      local out, err, code = h.quarry("run " .. script, { TZ = tz })
      assert.are.equal(0, code, err)
      assert.are.equal(want, out, tz)
    end
    os.remove(script)
  end)
end)
