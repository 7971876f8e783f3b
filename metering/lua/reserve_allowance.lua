-- reserve_allowance.lua — put a member's allowance into one tab's reserve, once.
--
-- Guarantee: a reservation id (subscription and period, settlement/subscriptions/allowances.py)
-- is added to a tab at most once, and only while the tab accepts spending. The free seconds of
-- each show kind are added to the tab's reserve (free:<kind>, left; freeres:<kind>, ever put
-- in), which bill_sessions.lua and start_session.lua draw on in the same step as their cap
-- check; a discount sets dbp:<kind> (or dbp:tip) to the largest discount reserved. The reserve
-- lives in the tab's own hash, so every step that spends it touches the tab's slot only
-- (Redis Cluster). The ledger reserved these seconds for this tab before this call, so no
-- other tab can spend them.
--
-- KEYS: [1] tab hash
-- ARGV: [1] reservation id  [2] spendable states
--   then 3 per grant: kind (private | spy | cam2cam | tip), free seconds, discount bp
-- Returns {code}, code in order: tab_not_found | duplicate (this reservation is in the tab)
--   | tab_not_open | applied
-- Cost: O(grants): 1 HMGET, 1 HGET, up to 3 HINCRBY/HSET per grant.

local reservation, spendable = ARGV[1], ARGV[2]
local FIXED, PER = 2, 3

local f = redis.call('HMGET', KEYS[1], 'state', 'alw:' .. reservation)
if not f[1] then
  return {'tab_not_found'}
end
if f[2] then
  return {'duplicate'}
end
if not in_states(spendable, f[1]) then
  return {'tab_not_open'}
end
for i = 0, (#ARGV - FIXED) / PER - 1 do
  local kind = ARGV[FIXED + PER * i + 1]
  local free_s, bp = tonumber(ARGV[FIXED + PER * i + 2]), tonumber(ARGV[FIXED + PER * i + 3])
  if free_s > 0 then
    redis.call('HINCRBY', KEYS[1], 'free:' .. kind, free_s)
    redis.call('HINCRBY', KEYS[1], 'freeres:' .. kind, free_s)
  end
  local current = tonumber(redis.call('HGET', KEYS[1], 'dbp:' .. kind) or '0')
  if bp > current then
    redis.call('HSET', KEYS[1], 'dbp:' .. kind, int(bp))
  end
end
redis.call('HSET', KEYS[1], 'alw:' .. reservation, '1')
return {'applied'}
