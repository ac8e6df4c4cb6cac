--- quarry.dates: calendar dates ("YYYY-MM-DD") by arithmetic. os.time
-- reads a date as local time, so code that mixed it with os.date("!...")
-- shifted a day east or west of UTC: a fetch in Auckland asked for the day
-- before its range, a monthly report there lost 29 February, and a clock
-- change day had 48 periods instead of 46 or 50. Nothing here reads the
-- time zone.
local M = {}

local DAYS_IN_MONTH = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

function M.is_leap(y) return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) end

function M.days_in_month(y, m)
  if m == 2 and M.is_leap(y) then return 29 end
  return DAYS_IN_MONTH[m]
end

local function parts(date)
  local y, m, d = date:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then error(("not a date: %s"):format(tostring(date)), 2) end
  return tonumber(y), tonumber(m), tonumber(d)
end

--- Days since 1970-01-01 (H. Hinnant's days_from_civil).
function M.day_number(date)
  local y, m, d = parts(date)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- The date n days after 1970-01-01 (civil_from_days).
function M.date_of(n)
  n = n + 719468
  local era = n // 146097
  local doe = n - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return ("%04d-%02d-%02d"):format(y, m, d)
end

--- Seconds since 1970 of the date's UTC midnight.
function M.epoch(date) return M.day_number(date) * 86400 end

--- 0 for Sunday .. 6 for Saturday (1970-01-01 was a Thursday).
function M.weekday(date) return (M.day_number(date) + 4) % 7 end

--- Every date from..to, in order.
function M.days(from, to)
  local out = {}
  for n = M.day_number(from), M.day_number(to) do out[#out + 1] = M.date_of(n) end
  return out
end

--- The last day of a month ("YYYY-MM" -> "YYYY-MM-DD").
function M.month_end(month)
  local y, m = month:match("^(%d%d%d%d)%-(%d%d)$")
  y, m = tonumber(y), tonumber(m)
  return ("%04d-%02d-%02d"):format(y, m, M.days_in_month(y, m))
end

--- Settlement periods of a day in Europe/London: 46 on the last Sunday of
-- March (the clocks go forward), 50 on the last Sunday of October, else 48.
function M.periods_in_day(date)
  local y, m, d = parts(date)
  if m ~= 3 and m ~= 10 then return 48 end
  -- March and October both have 31 days: the last Sunday is 31 - weekday(31st)
  if d ~= 31 - M.weekday(("%04d-%02d-31"):format(y, m)) then return 48 end
  return m == 3 and 46 or 50
end

return M
