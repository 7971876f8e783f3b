-- open_tab.lua — open a Post Pay tab: at most one open tab per customer and currency.
--
-- Guarantee: a tab id is created once; the customer's open-tab pointer for the currency names
-- at most one tab, and only a tab in the `open` state.
--
-- KEYS: [1] tab hash  [2] open-tab pointer for (customer, currency)  [3] customer live channel
-- ARGV: [1] tab_id  [2] customer  [3] currency  [4] cap_minor  [5] auth_ref
--       [6] capture_before_ms  [7] now_ms  [8] open state name
--       [9] processor holding the authorization  [10] processors tried, in order (settlement
--       and reconciliation read both; "" for a deployment with one unnamed processor)
--       [11] payment method (kept for a second hold where the processor cannot raise one)
-- Returns {code, state, cap, accrued, ver, tab_id} where code, in order of precedence, is
--   duplicate     the tab id exists with the same customer, currency, cap and auth_ref
--   id_reused     the tab id exists with other parameters (tab_id names that tab)
--   tab_already_open  another tab is open for this customer and currency (tab_id names it)
--   applied       the tab is open
-- Cost: O(1): one HMGET, one GET, one HSET, one SET.

local tab_id, customer, currency = ARGV[1], ARGV[2], ARGV[3]
local cap, auth_ref, capture_before_ms = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local now_ms, open_state = tonumber(ARGV[7]), ARGV[8]
local processor, processor_tried, payment_method = ARGV[9], ARGV[10], ARGV[11]

local t = redis.call('HMGET', KEYS[1], 'customer', 'currency', 'opened_cap', 'auth_ref',
  'state', 'cap', 'accrued', 'ver')
if t[1] then
  local same = t[1] == customer and t[2] == currency and tonumber(t[3]) == cap and t[4] == auth_ref
  return {same and 'duplicate' or 'id_reused', t[5], tonumber(t[6]), tonumber(t[7]),
    tonumber(t[8]), tab_id}
end

local current = redis.call('GET', KEYS[2])
if current then
  return {'tab_already_open', '', 0, 0, 0, current}
end

redis.call('HSET', KEYS[1],
  'customer', customer, 'currency', currency, 'state', open_state,
  'cap', int(cap), 'opened_cap', int(cap), 'accrued', '0', 'seq', '0', 'ver', '1',
  'burn', '0', 'sessions', '0',
  'auth_ref', auth_ref, 'capture_before', int(capture_before_ms),
  'opened_at', int(now_ms), 'active_at', int(now_ms),
  'processor', processor, 'processor_tried', processor_tried, 'payment_method', payment_method)
redis.call('SET', KEYS[2], tab_id)
announce_tab(KEYS[3], tab_id, currency, open_state, cap, 0, 1, 0)
return {'applied', open_state, cap, 0, 1, tab_id}
