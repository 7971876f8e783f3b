-- freeze_tab.lua — freeze a tab for settlement: from here on nothing more can be spent.
--
-- Guarantee: the amount to capture is fixed at the instant of the freeze (accrued never moves
-- again), the reason is recorded in the same step, and the customer may open a new tab in the
-- currency. Freezing a tab that is already frozen returns the original freeze.
--
-- KEYS: [1] tab hash  [2] open-tab pointer for (customer, currency)  [3] customer live channel
-- ARGV: [1] tab_id  [2] reason  [3] now_ms  [4] states that may be frozen (",open,")
--       [5] frozen state name ("settling")
-- Returns {code, state, cap, accrued, ver, reason, frozen_at_ms} where code is, in order,
--   tab_not_found | duplicate (already frozen; original reason and time) | tab_not_open
--   | applied
-- Cost: O(1).

local tab_id, reason, now_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local allowed, frozen = ARGV[4], ARGV[5]

local t = redis.call('HMGET', KEYS[1], 'state', 'cap', 'accrued', 'ver', 'freeze_reason',
  'frozen_at', 'currency', 'burn')
if not t[1] then
  return {'tab_not_found', '', 0, 0, 0, '', 0}
end
local state, cap, accrued, ver = t[1], tonumber(t[2]), tonumber(t[3]), tonumber(t[4])
if t[5] then
  return {'duplicate', state, cap, accrued, ver, t[5], tonumber(t[6])}
end
if not in_states(allowed, state) then
  return {'tab_not_open', state, cap, accrued, ver, '', 0}
end

redis.call('HSET', KEYS[1], 'state', frozen, 'freeze_reason', reason, 'frozen_at', int(now_ms))
ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
if redis.call('GET', KEYS[2]) == tab_id then
  redis.call('DEL', KEYS[2])
end
announce_tab(KEYS[3], tab_id, t[7], frozen, cap, accrued, ver, tonumber(t[8] or '0'))
return {'applied', frozen, cap, accrued, ver, reason, now_ms}
