-- void_purchase.lua — void a pending request before settlement: the line to zero, the cap freed.
--
-- Guarantee: in one atomic step, while the tab is open (its accrued amount may still move), a
-- pending request's line is voided — its amount and share become 0, its original amount is
-- kept as `was` — the tab's accrued amount falls by that amount (the cap is freed), the
-- purchase record turns `voided` with the reason, and a `purchase_voided` room event is queued
-- in the customer's outbox. So accrued = Σ lines still holds, and a voided line is never
-- captured: settlement captures the accrued amount, which no longer counts it. Voiding twice
-- returns the first void. Once the tab is frozen the amount is fixed: the answer is
-- tab_not_open and the request is refunded after the capture instead.
--
-- KEYS: [1] tab hash  [2] tab lines hash  [3] purchase record hash  [4] customer outbox stream
--   [5] customer live channel
-- ARGV: [1] now_ms  [2] customer  [3] purchase_id  [4] tab_id  [5] event (decline | expire)
--   [6] purchase states it may be voided from (",pending,")  [7] voided state name
--   [8] tab states in which the amount may still move (",open,")  [9] outbox_max
--   [10] exhausted_below_minor: once at least this remains again, the tab's exhausted mark
--   (the pending cap_reached trigger) is cleared, as raising the cap does
-- Returns {code, state, cap, accrued, ver, purchase_state, outbox_id, data, voided_minor,
--   burn}. Codes, in order of precedence:
--   purchase_not_found    no such purchase on this tab
--   duplicate             voided before; the purchase is unchanged
--   purchase_not_pending  fulfilled, granted or refunded: nothing to void
--   not_due               an expiry before the request's deadline
--   tab_not_open          the tab is frozen or gone: refund after the capture instead
--   busy                  the outbox is full; retry
--   applied
-- Cost: O(1): 2 HMGET, 1 HGET, 3 HSET, 1 HINCRBY, 1 XLEN, 1 XADD, 1 SPUBLISH.

local now_ms, customer, purchase_id, tab_id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local event, voidable, voided, movable = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local outbox_max, exhausted_below = tonumber(ARGV[9]), tonumber(ARGV[10])
local tab_key, lines_key, buy_key, outbox_key, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5]

local p = redis.call('HMGET', buy_key, 'tab', 'state', 'until', 'room', 'item', 'name',
  'kind', 'amount', 'currency')
if not p[1] or p[1] ~= tab_id then
  return {'purchase_not_found', '', 0, 0, 0, '', '', '', 0, 0}
end
local t = redis.call('HMGET', tab_key, 'state', 'cap', 'accrued', 'ver', 'burn')
local state, cap, accrued, ver = t[1] or '', tonumber(t[2] or '0'), tonumber(t[3] or '0'),
  tonumber(t[4] or '0')
local burn = tonumber(t[5] or '0')
if p[2] == voided then
  return {'duplicate', state, cap, accrued, ver, p[2], '', '', tonumber(p[8]), burn}
end
if not in_states(voidable, p[2]) then
  return {'purchase_not_pending', state, cap, accrued, ver, p[2], '', '', 0, burn}
end
if event == 'expire' and now_ms < tonumber(p[3]) then
  return {'not_due', state, cap, accrued, ver, p[2], '', '', 0, burn}
end
local packed = redis.call('HGET', lines_key, 'buy:' .. purchase_id)
if not t[1] or not in_states(movable, state) or not packed then
  return {'tab_not_open', state, cap, accrued, ver, p[2], '', '', 0, burn}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'busy', state, cap, accrued, ver, p[2], '', '', 0, burn}
end

local line = cmsgpack.unpack(packed)
local amount = line.amount
line.was, line.amount, line.share, line.state = amount, 0, 0, voided
redis.call('HSET', lines_key, 'buy:' .. purchase_id, cmsgpack.pack(line))
accrued = accrued - amount
redis.call('HSET', tab_key, 'accrued', int(accrued))
if cap - accrued >= exhausted_below then
  redis.call('HDEL', tab_key, 'exhausted_at')
end
ver = redis.call('HINCRBY', tab_key, 'ver', 1)
redis.call('HSET', buy_key, 'state', voided, 'reason', event, 'resolved_at', int(now_ms))
local data = cmsgpack.pack({
  type = 'purchase_voided', purchase_id = purchase_id, room = p[4], item = p[5],
  item_name = p[6], kind = p[7], state = voided, reason = event, amount = amount,
  currency = p[9], at = now_ms})
local outbox_id = redis.call('XADD', outbox_key, '*',
  'k', 'buy_void:' .. customer .. ':' .. purchase_id, 'r', p[4], 't', 'purchase_voided',
  'd', data, 'cur', p[9], 'earn', '0')
announce_tab(channel, tab_id, p[9], state, cap, accrued, ver, burn)
return {'applied', state, cap, accrued, ver, voided, outbox_id, data, amount, burn}
