-- refund_purchase.lua — record that a pending request was refunded after the capture.
--
-- Guarantee: in one atomic step a pending request becomes `refunded` (in its record and on its
-- line, while the tab still holds its lines) and a `purchase_refunded` room event is queued in
-- the customer's outbox, earning the model nothing (a pending request never credited her live
-- earnings). The money moved in the refunds flow before this step (settlement/refunds, its
-- refund id derived from the purchase id, so a retry never refunds twice); this step only
-- records it, so running it twice returns the first result. A request that was fulfilled or
-- voided can never be refunded, nor the reverse: every step tests the state it leaves.
--
-- KEYS: [1] purchase record hash  [2] tab lines hash  [3] customer outbox stream
-- ARGV: [1] now_ms  [2] customer  [3] purchase_id  [4] tab_id
--   [5] purchase states it may be refunded from (",pending,")  [6] refunded state name
--   [7] outbox_max
-- Returns {code, purchase_state, outbox_id, data}. Codes, in order of precedence:
--   purchase_not_found    no such purchase on this tab
--   duplicate             refunded before
--   purchase_not_pending  fulfilled, voided or granted
--   busy                  the outbox is full; retry
--   applied
-- Cost: O(1): 1 HMGET, 1 HGET, 2 HSET, 1 XLEN, 1 XADD.

local now_ms, customer, purchase_id, tab_id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local pending, refunded, outbox_max = ARGV[5], ARGV[6], tonumber(ARGV[7])
local buy_key, lines_key, outbox_key = KEYS[1], KEYS[2], KEYS[3]

local p = redis.call('HMGET', buy_key, 'tab', 'state', 'room', 'item', 'name', 'kind',
  'amount', 'currency')
if not p[1] or p[1] ~= tab_id then
  return {'purchase_not_found', '', '', ''}
end
if p[2] == refunded then
  return {'duplicate', p[2], '', ''}
end
if not in_states(pending, p[2]) then
  return {'purchase_not_pending', p[2], '', ''}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'busy', p[2], '', ''}
end

redis.call('HSET', buy_key, 'state', refunded, 'resolved_at', int(now_ms))
local packed = redis.call('HGET', lines_key, 'buy:' .. purchase_id)
if packed then
  local line = cmsgpack.unpack(packed)
  line.state = refunded
  redis.call('HSET', lines_key, 'buy:' .. purchase_id, cmsgpack.pack(line))
end
local data = cmsgpack.pack({
  type = 'purchase_refunded', purchase_id = purchase_id, room = p[3], item = p[4],
  item_name = p[5], kind = p[6], state = refunded, amount = tonumber(p[7]),
  currency = p[8], share = 0, at = now_ms})
local outbox_id = redis.call('XADD', outbox_key, '*',
  'k', 'buy_refund:' .. customer .. ':' .. purchase_id, 'r', p[3], 't', 'purchase_refunded',
  'd', data, 'cur', p[8], 'earn', 0)
return {'applied', refunded, outbox_id, data}
