-- raise_cap.lua — raise a tab's cap (after the gateway raised the hold).
--
-- Guarantee: a cap only ever grows, and only while spending is allowed; raising to the cap the
-- tab already has is a harmless repeat, so the call is idempotent for a given target. A raise
-- clears the tab's `exhausted_at` mark: the pending `cap_reached` settlement trigger is off.
--
-- KEYS: [1] tab hash  [2] customer live channel
-- ARGV: [1] new_cap_minor  [2] auth_ref  [3] capture_before_ms  [4] now_ms
--       [5] states in which the cap may be raised (",open,")  [6] tab_id
--       [7] "second" when ARGV[2] is a second hold under the tab (its processor cannot raise
--       a hold in place) of [8] minor units: it is recorded as field `hold:<auth_ref>`
--       (`amount:capture_before_ms`) beside the first hold, and the tab's capture_before
--       becomes the earlier of the two; otherwise ARGV[2] replaces the tab's auth_ref
-- Returns {code, state, cap, accrued, ver} where code, in order of precedence, is
--   tab_not_found | tab_not_open | duplicate (cap already equals new_cap)
--   | cap_not_raised (new_cap is below the cap) | applied
-- Cost: O(1).

local new_cap, auth_ref, capture_before_ms = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local now_ms, allowed, tab_id = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local second, second_minor = ARGV[7] == 'second', tonumber(ARGV[8] or '0')

local t = redis.call('HMGET', KEYS[1], 'state', 'cap', 'accrued', 'ver', 'currency', 'burn')
if not t[1] then
  return {'tab_not_found', '', 0, 0, 0}
end
local state, cap, accrued, ver = t[1], tonumber(t[2]), tonumber(t[3]), tonumber(t[4])
if not in_states(allowed, state) then
  return {'tab_not_open', state, cap, accrued, ver}
end
if new_cap == cap then
  return {'duplicate', state, cap, accrued, ver}
end
if new_cap < cap then
  return {'cap_not_raised', state, cap, accrued, ver}
end

if second then
  local before = tonumber(redis.call('HGET', KEYS[1], 'capture_before') or capture_before_ms)
  redis.call('HSET', KEYS[1], 'cap', int(new_cap), 'hold:' .. auth_ref,
    int(second_minor) .. ':' .. int(capture_before_ms),
    'capture_before', int(math.min(before, capture_before_ms)), 'active_at', int(now_ms))
else
  redis.call('HSET', KEYS[1], 'cap', int(new_cap), 'auth_ref', auth_ref,
    'capture_before', int(capture_before_ms), 'active_at', int(now_ms))
end
redis.call('HDEL', KEYS[1], 'exhausted_at')
ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
announce_tab(KEYS[2], tab_id, t[5], state, new_cap, accrued, ver, tonumber(t[6] or '0'))
return {'applied', state, new_cap, accrued, ver}
