-- begin_settlement.lua — record the amount a frozen tab settles for, before the gateway call.
--
-- Guarantee: the amount sent to the gateway is fixed once, in the tab itself, and equals the
-- amount accrued at the freeze; every later attempt reads the same amount back. Each call also
-- counts an attempt, so a worker that finds attempts > 1 knows an earlier worker may have
-- reached the gateway and must look its outcome up instead of presuming it absent.
--
-- KEYS: [1] tab hash
-- ARGV: [1] idempotency key of the gateway call  [2] now_ms
--       [3] states a settlement may begin in (",settling,")
-- Returns {code, state, amount, auth_ref, capture_before_ms, currency, attempts} where code
--   is, in order of precedence:
--   tab_not_found     no such tab
--   tab_not_settling  the tab is not frozen for settlement (still open, or settled already)
--   duplicate         the amount was recorded before; it is returned, the attempt is counted
--   applied           the amount is recorded now
-- Cost: O(1): one HMGET, one HSET, one HINCRBY.

local key, now_ms, allowed = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local t = redis.call('HMGET', KEYS[1], 'state', 'accrued', 'auth_ref', 'capture_before',
  'currency', 'settle_amount')
if not t[1] then
  return {'tab_not_found', '', 0, '', 0, '', 0}
end
local state = t[1]
if not in_states(allowed, state) then
  return {'tab_not_settling', state, tonumber(t[2]), t[3], tonumber(t[4]), t[5], 0}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'settle_attempts', 1)
if t[6] then
  return {'duplicate', state, tonumber(t[6]), t[3], tonumber(t[4]), t[5], attempts}
end
redis.call('HSET', KEYS[1], 'settle_amount', t[2], 'settle_key', key,
  'settle_started_at', int(now_ms))
return {'applied', state, tonumber(t[2]), t[3], tonumber(t[4]), t[5], attempts}
