-- apply_tips.lua — apply tips against their tabs, each at most once and never past the cap.
--
-- Guarantee, for each tip on its own: either nothing is written (a refusal), or in one atomic
-- step the tab's accrued amount grows by the tip, an itemized line records it with the model's
-- share, the tip id is recorded with its result (so a retry returns that result and is never
-- applied twice), and the tip's room event is queued in the customer's outbox for relaying
-- (metering/rooms.py). accrued <= cap holds before and after every tip.
-- On a member's tab whose plan gives a discount on tips (dbp:tip, reserve_allowance.lua) the
-- tab is charged discounted(amount, dbp) (the one discount rule, _prelude.lua): the cap check,
-- the line (with `saved`, what the discount took off), the share and the room event all use
-- what is charged; the op record keeps the amount asked, so a retry is recognised.
--
-- Tips are batched: one call carries any number of tips, each with its own four keys. On Redis
-- Cluster a batch only carries tips whose keys share one slot (metering/batch.py groups them).
--
-- KEYS, 6 per tip: [1] tab hash  [2] tab lines hash  [3] op record  [4] customer outbox stream
--   [5] customer live channel  [6] customer devices hash (metering/devices.py): the new balance
--   is announced on the channel unless the customer has exactly one device (the tipping one,
--   which learns it from this reply)
-- ARGV: [1] now_ms  [2] op_ttl_ms  [3] lines_max  [4] outbox_max  [5] spendable states
--   [6] exhausted_below_minor: once less than this remains, the tab is marked exhausted (the
--       settlement trigger `cap_reached`, recorded in the same step as the spend that causes it)
--   then 10 per tip: customer, tip_id, tab_id, room, amount_minor, currency, payout_bp,
--   viewer name ('' when anonymous), anonymous ('1' or '0'), message
-- Returns one array per tip: {code, state, cap, accrued, ver, seq, share, at_ms, outbox_id, data,
--   burn} for applied and duplicate (burn, the tab's running sessions' per-minute rates, only
--   for applied); {code, state, cap, accrued, ver, burn} for refusals read from the tab;
--   {code, state, cap, accrued, ver} for the others. Codes, in order of precedence:
--   duplicate       the tip id was applied before; the original result is returned
--   id_reused       the tip id was applied before with another tab, room or amount
--   tab_not_found   no such tab
--   currency_mismatch  the tip's currency is not the tab's
--   tab_not_open    the tab no longer accepts spending (it is settling or done)
--   invalid_amount  not a whole positive amount below 2^53 (the wrapper checks first)
--   over_cap        accrued + amount would exceed the cap
--   lines_full      the tab has lines_max lines already
--   busy            the outbox is full (relaying is behind); retry with the same id
--   applied
-- Cost: O(1) per tip: 2 HMGET, 3 HSET, 1 HINCRBY, 1 XLEN, 1 XADD, 1 PEXPIRE, 1 HVALS (of one
-- field per server process) and, with several devices, 1 SPUBLISH.

local now_ms, op_ttl_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local lines_max, outbox_max, spendable = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local exhausted_below = tonumber(ARGV[6])
local FIXED, PER_TIP = 6, 10

local function devices(devices_key)
  local n = 0
  for _, count in ipairs(redis.call('HVALS', devices_key)) do
    n = n + tonumber(count)
  end
  return n
end

local function apply_tip(tab_key, lines_key, op_key, outbox_key, channel, devices_key, a)
  local customer, tip_id, tab_id, room = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local amount, currency, payout_bp = tonumber(ARGV[a + 5]), ARGV[a + 6], tonumber(ARGV[a + 7])
  local name, anon, message = ARGV[a + 8], ARGV[a + 9] == '1', ARGV[a + 10]

  local o = redis.call('HMGET', op_key, 'tab', 'room', 'amount', 'state', 'cap', 'accrued',
    'ver', 'seq', 'share', 'at', 'outbox')
  if o[1] then
    if o[1] ~= tab_id or o[2] ~= room or tonumber(o[3]) ~= amount then
      return {'id_reused', o[4], tonumber(o[5]), tonumber(o[6]), tonumber(o[7])}
    end
    return {'duplicate', o[4], tonumber(o[5]), tonumber(o[6]), tonumber(o[7]), tonumber(o[8]),
      tonumber(o[9]), tonumber(o[10]), o[11]}
  end

  local tab, refused = spending_tab(tab_key, currency, spendable, 'dbp:tip')
  if not tab then
    return refused
  end
  local state, cap, accrued, ver, burn = tab.state, tab.cap, tab.accrued, tab.ver, tab.burn
  if not is_amount(amount) or amount == 0 then
    return {'invalid_amount', state, cap, accrued, ver, burn}
  end
  local asked = amount
  amount = discounted(asked, tonumber(tab.extra or '0'))
  if accrued + amount > cap then
    return {'over_cap', state, cap, accrued, ver, burn}
  end
  local seq = tab.seq + 1
  if seq > lines_max then
    return {'lines_full', state, cap, accrued, ver, burn}
  end
  if redis.call('XLEN', outbox_key) >= outbox_max then
    return {'busy', state, cap, accrued, ver, burn}
  end

  local share = floor_div(amount * payout_bp, 10000)
  accrued, ver = accrue(tab_key, cap, accrued, amount, seq, now_ms, exhausted_below)
  -- The message rides on the line (bounded by the caller's message_chars_max) so that the
  -- ledger keeps it for a dispute's evidence after the stream has trimmed the event.
  redis.call('HSET', lines_key, 'tip:' .. tip_id, cmsgpack.pack({
    kind = 'tip', id = tip_id, seq = seq, at = now_ms, room = room,
    amount = amount, bp = payout_bp, share = share, msg = message, saved = asked - amount}))
  local data = cmsgpack.pack({
    type = 'tip', tip_id = tip_id, room = room, amount = amount, currency = currency,
    share = share, name = name, anon = anon, message = message, at = now_ms})
  local outbox_id = redis.call('XADD', outbox_key, '*', 'k', 'tip:' .. customer .. ':' .. tip_id,
    'r', room, 't', 'tip', 'd', data, 'cur', currency, 'earn', int(share))
  redis.call('HSET', op_key, 'tab', tab_id, 'room', room, 'amount', int(asked),
    'state', state, 'cap', int(cap), 'accrued', int(accrued), 'ver', int(ver),
    'seq', int(seq), 'share', int(share), 'at', int(now_ms), 'outbox', outbox_id)
  redis.call('PEXPIRE', op_key, op_ttl_ms)
  if devices(devices_key) ~= 1 then
    announce_tab(channel, tab_id, currency, state, cap, accrued, ver, burn)
  end
  return {'applied', state, cap, accrued, ver, seq, share, now_ms, outbox_id, data, burn}
end

local results = {}
for i = 0, (#ARGV - FIXED) / PER_TIP - 1 do
  local k = 6 * i
  results[i + 1] = apply_tip(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
    KEYS[k + 6], FIXED + PER_TIP * i)
end
return results
