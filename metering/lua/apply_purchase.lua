-- apply_purchase.lua — charge a catalog item against its tab, at most once, never past the cap.
--
-- Guarantee: either nothing is written (a refusal), or in one atomic step the tab's accrued
-- amount grows by the item's price, an itemized line of kind `purchase` records it with the
-- model's share and the purchase's state, the purchase record (keyed by the client-minted
-- purchase id, so a retry returns the original result and is never applied twice) holds its
-- state, and the purchase's room event is queued in the customer's outbox for relaying
-- (metering/rooms.py). accrued <= cap holds before and after. The same rules as a tip
-- (apply_tips.lua), in the same order, so a purchase is a tip of its own kind.
--
-- KEYS: [1] tab hash  [2] tab lines hash  [3] purchase record hash  [4] customer outbox stream
--   [5] customer live channel
-- ARGV: [1] now_ms  [2] op_ttl_ms  [3] lines_max  [4] outbox_max  [5] spendable tab states
--   [6] exhausted_below_minor (as apply_tips.lua)  [7] customer  [8] purchase_id  [9] tab_id
--   [10] room  [11] item_id  [12] item name  [13] item kind (request | unlock)
--   [14] amount_minor  [15] currency  [16] payout_bp  [17] state the purchase starts in
--   (pending | granted: metering/purchase_lifecycle.py)  [18] until_ms: a request's deadline,
--   an unlock's entitlement end  [19] viewer name ('' when anonymous)  [20] anonymous ('1'|'0')
--   [21] message
-- Returns {code, state, cap, accrued, ver, seq, share, at_ms, outbox_id, data, burn,
--   purchase_state, until_ms} for applied and duplicate (data and burn are '' and 0 on a
--   duplicate; purchase_state is the current one); {code, state, cap, accrued, ver} otherwise.
--   Codes, in order of precedence:
--   duplicate       the purchase id was applied before; the original result is returned
--   id_reused       the purchase id was applied before with another tab, room, item or amount
--   tab_not_found   no such tab
--   currency_mismatch  the item's currency is not the tab's
--   tab_not_open    the tab no longer accepts spending
--   invalid_amount  not a whole positive amount below 2^53 (the wrapper checks first)
--   over_cap        accrued + amount would exceed the cap
--   lines_full      the tab has lines_max lines already
--   busy            the outbox is full (relaying is behind); retry with the same id
--   applied
-- Cost: O(1): 2 HMGET, 3 HSET, 1 HINCRBY, 1 XLEN, 1 XADD, 1 PEXPIRE, 1 SPUBLISH.

local now_ms, op_ttl_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local lines_max, outbox_max, spendable = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local exhausted_below = tonumber(ARGV[6])
local customer, purchase_id, tab_id, room = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local item_id, item_name, item_kind = ARGV[11], ARGV[12], ARGV[13]
local amount, currency, payout_bp = tonumber(ARGV[14]), ARGV[15], tonumber(ARGV[16])
local pstate, until_ms = ARGV[17], tonumber(ARGV[18])
local name, anon, message = ARGV[19], ARGV[20] == '1', ARGV[21]
local tab_key, lines_key, buy_key, outbox_key, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5]

local o = redis.call('HMGET', buy_key, 'tab', 'room', 'item', 'amount', 'tstate', 'cap',
  'accrued', 'ver', 'seq', 'share', 'at', 'outbox', 'state', 'until')
if o[1] then
  if o[1] ~= tab_id or o[2] ~= room or o[3] ~= item_id or tonumber(o[4]) ~= amount then
    return {'id_reused', o[5], tonumber(o[6]), tonumber(o[7]), tonumber(o[8])}
  end
  return {'duplicate', o[5], tonumber(o[6]), tonumber(o[7]), tonumber(o[8]), tonumber(o[9]),
    tonumber(o[10]), tonumber(o[11]), o[12], '', 0, o[13], tonumber(o[14])}
end

local tab, refused = spending_tab(tab_key, currency, spendable, nil)
if not tab then
  return refused
end
local state, cap, accrued, ver, burn = tab.state, tab.cap, tab.accrued, tab.ver, tab.burn
if not is_amount(amount) or amount == 0 then
  return {'invalid_amount', state, cap, accrued, ver}
end
if accrued + amount > cap then
  return {'over_cap', state, cap, accrued, ver}
end
local seq = tab.seq + 1
if seq > lines_max then
  return {'lines_full', state, cap, accrued, ver}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'busy', state, cap, accrued, ver}
end

local share = floor_div(amount * payout_bp, 10000)
accrued, ver = accrue(tab_key, cap, accrued, amount, seq, now_ms, exhausted_below)
redis.call('HSET', lines_key, 'buy:' .. purchase_id, cmsgpack.pack({
  kind = 'purchase', id = purchase_id, seq = seq, at = now_ms, room = room,
  amount = amount, bp = payout_bp, share = share, item = item_id, name = item_name,
  ikind = item_kind, state = pstate, was = 0}))
-- A request earns the model nothing until she fulfils it (its room event then credits her);
-- an unlock earns at once, like a tip.
local earned = 0
if pstate == 'granted' then
  earned = share
end
local data = cmsgpack.pack({
  type = 'purchase', purchase_id = purchase_id, room = room, item = item_id,
  item_name = item_name, kind = item_kind, state = pstate, amount = amount,
  currency = currency, share = share, name = name, anon = anon, message = message,
  at = now_ms, ['until'] = until_ms})
local outbox_id = redis.call('XADD', outbox_key, '*',
  'k', 'buy:' .. customer .. ':' .. purchase_id, 'r', room, 't', 'purchase', 'd', data,
  'cur', currency, 'earn', int(earned))
redis.call('HSET', buy_key, 'tab', tab_id, 'room', room, 'item', item_id, 'name', item_name,
  'kind', item_kind, 'amount', int(amount), 'currency', currency, 'tstate', state,
  'cap', int(cap), 'accrued', int(accrued), 'ver', int(ver), 'seq', int(seq),
  'share', int(share), 'at', int(now_ms), 'outbox', outbox_id, 'state', pstate,
  'until', int(until_ms), 'viewer', name, 'anon', anon and '1' or '0', 'message', message)
redis.call('PEXPIRE', buy_key, op_ttl_ms)
announce_tab(channel, tab_id, currency, state, cap, accrued, ver, burn)
return {'applied', state, cap, accrued, ver, seq, share, now_ms, outbox_id, data, burn, pstate,
  until_ms}
