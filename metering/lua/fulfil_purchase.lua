-- fulfil_purchase.lua — mark a pending request done: its line stands and the model earns it.
--
-- Guarantee: in one atomic step a pending request becomes `fulfilled` (in its record and on its
-- line, while the tab still holds its lines) and a `purchase_fulfilled` room event crediting
-- the model's share is queued in the customer's outbox. The money does not move: the line was
-- charged when it was bought. A request that was voided can never be fulfilled, nor the
-- reverse: both steps test the state they leave in the same atomic step. Fulfilling twice
-- returns the first result.
--
-- KEYS: [1] purchase record hash  [2] tab lines hash  [3] customer outbox stream
-- ARGV: [1] now_ms  [2] customer  [3] purchase_id  [4] tab_id
--   [5] purchase states it may be fulfilled from (",pending,")  [6] fulfilled state name
--   [7] outbox_max
-- Returns {code, purchase_state, outbox_id, data, share}. Codes, in order of precedence:
--   purchase_not_found    no such purchase on this tab
--   duplicate             fulfilled before
--   purchase_not_pending  voided, granted or refunded
--   busy                  the outbox is full; retry
--   applied
-- Cost: O(1): 1 HMGET, 1 HGET, 2 HSET, 1 XLEN, 1 XADD.

local now_ms, customer, purchase_id, tab_id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local pending, fulfilled, outbox_max = ARGV[5], ARGV[6], tonumber(ARGV[7])
local buy_key, lines_key, outbox_key = KEYS[1], KEYS[2], KEYS[3]

local p = redis.call('HMGET', buy_key, 'tab', 'state', 'room', 'item', 'name', 'kind',
  'amount', 'currency', 'share')
if not p[1] or p[1] ~= tab_id then
  return {'purchase_not_found', '', '', '', 0}
end
if p[2] == fulfilled then
  return {'duplicate', p[2], '', '', tonumber(p[9])}
end
if not in_states(pending, p[2]) then
  return {'purchase_not_pending', p[2], '', '', 0}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'busy', p[2], '', '', 0}
end

redis.call('HSET', buy_key, 'state', fulfilled, 'resolved_at', int(now_ms))
local packed = redis.call('HGET', lines_key, 'buy:' .. purchase_id)
if packed then
  local line = cmsgpack.unpack(packed)
  line.state = fulfilled
  redis.call('HSET', lines_key, 'buy:' .. purchase_id, cmsgpack.pack(line))
end
local share = tonumber(p[9])
local data = cmsgpack.pack({
  type = 'purchase_fulfilled', purchase_id = purchase_id, room = p[3], item = p[4],
  item_name = p[5], kind = p[6], state = fulfilled, amount = tonumber(p[7]),
  currency = p[8], share = share, at = now_ms})
local outbox_id = redis.call('XADD', outbox_key, '*',
  'k', 'buy_done:' .. customer .. ':' .. purchase_id, 'r', p[3], 't', 'purchase_fulfilled',
  'd', data, 'cur', p[8], 'earn', int(share))
return {'applied', fulfilled, outbox_id, data, share}
