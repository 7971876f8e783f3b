-- _prelude.lua — helpers shared by every script; metering/scripts.py prepends this file.
--
-- Lua numbers are doubles. Every amount is an integer below 2^53, so + and - are exact, and the
-- bounds in metering/money.py keep every product below 2^53 too. Division is the one trap:
-- floor(a / b) may round up when a / b lies within an ulp of an integer, so floor_div uses the
-- exact math.fmod instead. Numbers are turned into strings only through int(), never tostring()
-- or `..`, which print 14 significant digits.

local function int(n)
  return string.format('%d', n)
end

local function floor_div(a, b)
  return (a - math.fmod(a, b)) / b
end

local function is_amount(n)
  return n ~= nil and n >= 0 and n < 9007199254740992 and n == math.floor(n)
end

-- What is charged for `amount` with a discount of `bp` basis points: the one discount rule
-- (metering/money.py discounted_minor): the discount is floor(amount * bp / 10000).
local function discounted(amount, bp)
  return amount - floor_div(amount * bp, 10000)
end

-- `set` is ",a,b,c," (metering/lifecycle.py lua_states); true when `state` is one of them.
local function in_states(set, state)
  return state ~= nil and string.find(set, ',' .. state .. ',', 1, true) ~= nil
end

-- Read the tab a charge in `currency` spends from (`spendable`: the states that may spend, as
-- in_states takes them), with one more field `extra` (or nil). The tab as a table (state, cap,
-- accrued, ver, seq, burn, extra), or nil and the refusal: tab_not_found, currency_mismatch or
-- tab_not_open, with the tab's balance and burn.
local function spending_tab(tab_key, currency, spendable, extra)
  local t = redis.call('HMGET', tab_key, unpack({'state', 'cap', 'accrued', 'ver', 'currency',
    'seq', 'burn', extra}))
  if not t[1] then
    return nil, {'tab_not_found', '', 0, 0, 0}
  end
  local tab = {state = t[1], cap = tonumber(t[2]), accrued = tonumber(t[3]),
    ver = tonumber(t[4]), seq = tonumber(t[6]), burn = tonumber(t[7] or '0'), extra = t[8]}
  if t[5] ~= currency then
    return nil, {'currency_mismatch', tab.state, tab.cap, tab.accrued, tab.ver, tab.burn}
  end
  if not in_states(spendable, tab.state) then
    return nil, {'tab_not_open', tab.state, tab.cap, tab.accrued, tab.ver, tab.burn}
  end
  return tab, nil
end

-- Charge `amount` to a tab as its line `seq` (a tip or a purchase): the accrued total grows, the
-- tab is marked exhausted (the cap_reached settlement trigger) once less than `exhausted_below`
-- is left, and its version moves on. The new accrued total and version.
local function accrue(tab_key, cap, accrued, amount, seq, now_ms, exhausted_below)
  accrued = accrued + amount
  redis.call('HSET', tab_key, 'accrued', int(accrued), 'seq', int(seq), 'active_at', int(now_ms))
  if cap - accrued < exhausted_below then
    redis.call('HSETNX', tab_key, 'exhausted_at', int(now_ms))
  end
  return accrued, redis.call('HINCRBY', tab_key, 'ver', 1)
end

-- Announce a tab's balance on its customer's sharded channel (tm:{c:C}:live), so that every
-- server process holding a connection of that customer pushes it. `channel` is always passed
-- in KEYS, so Redis Cluster routes and checks it like a key of the customer's tag.
-- `burn` is the sum of the per-minute rates of the tab's running sessions (0 without any), so a
-- viewer sees how fast the tab is being spent and how many seconds are left.
local function announce_tab(channel, tab_id, currency, state, cap, accrued, ver, burn)
  redis.call('SPUBLISH', channel, cmsgpack.pack({
    tab = tab_id, currency = currency, state = state, cap = cap, accrued = accrued, ver = ver,
    burn = burn or 0}))
end
