-- start_session.lua — start a metered show against a tab: prepaid, never past the cap.
--
-- Guarantee: a session id starts at most once; its first charge — the minimum duration, or
-- else the first second, prepaid — is applied in the same step as the start, and only if it
-- fits under the cap; the tab's burn rate grows by the session's rate; a line is written; the
-- session_started event is queued in the customer's outbox; the new balance is announced.
-- A member's tab (reserve_allowance.lua) fixes the session's discounted rate here, from the
-- tab's dbp:<kind>, and pays the first charge from its free seconds first (they cost 0); a
-- refusal takes nothing from the reserve.
--
-- KEYS: [1] tab hash  [2] tab lines hash  [3] session hash  [4] customer outbox
--   [5] customer live channel
-- ARGV: [1] now_ms  [2] customer  [3] session_id  [4] tab_id  [5] room  [6] kind
--   [7] rate (minor units a minute)  [8] min_s  [9] payout_bp  [10] owner  [11] lease_ms
--   [12] lines_max  [13] spendable states  [14] currency  [15] sessions_max (per tab)
-- Returns {code, state, cap, accrued, ver, burn, billed, amount, needed} where code is, in order:
--   duplicate (the session exists: its billed seconds and amount) | tab_not_found
--   | currency_mismatch | tab_not_open | sessions_full | lines_full
--   | insufficient_cap (needed = what the first charge would take beyond what remains)
--   | applied
-- Cost: O(1).

local now_ms, customer, sid, tab_id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local room, kind, rate, min_s = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local bp, owner, lease_ms, lines_max = tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local spendable, currency, sessions_max = ARGV[13], ARGV[14], tonumber(ARGV[15])

local existing = read_session(KEYS[3])
if existing then
  local t = redis.call('HMGET', KEYS[1], 'state', 'cap', 'accrued', 'ver', 'burn')
  return {'duplicate', t[1] or '', tonumber(t[2] or '0'), tonumber(t[3] or '0'),
    tonumber(t[4] or '0'), tonumber(t[5] or '0'), existing.billed, existing.amount, 0}
end
local t = redis.call('HMGET', KEYS[1], 'state', 'cap', 'accrued', 'ver', 'currency', 'seq',
  'burn', 'sessions', 'dbp:' .. kind, 'free:' .. kind)
if not t[1] then
  return {'tab_not_found', '', 0, 0, 0, 0, 0, 0, 0}
end
local state, cap, accrued, ver = t[1], tonumber(t[2]), tonumber(t[3]), tonumber(t[4])
local burn, running = tonumber(t[7] or '0'), tonumber(t[8] or '0')
local function refuse(code, needed)
  return {code, state, cap, accrued, ver, burn, 0, 0, needed or 0}
end
if t[5] ~= currency then
  return refuse('currency_mismatch')
end
if not in_states(spendable, state) then
  return refuse('tab_not_open')
end
if running >= sessions_max then
  return refuse('sessions_full')
end
local seq = tonumber(t[6]) + 1
if seq > lines_max then
  return refuse('lines_full')
end
local first = math.max(min_s, 1)
local drate = discounted(rate, tonumber(t[9] or '0'))
local cover = math.min(first, tonumber(t[10] or '0'))
local amount = prorate(drate, first - cover)
if accrued + amount > cap then
  return refuse('insufficient_cap', accrued + amount - cap)
end
cover = take_free(KEYS[1], kind, cover)

accrued = accrued + amount
redis.call('HSET', KEYS[1], 'accrued', int(accrued), 'seq', int(seq), 'active_at', int(now_ms))
burn = redis.call('HINCRBY', KEYS[1], 'burn', rate)
redis.call('HINCRBY', KEYS[1], 'sessions', 1)
ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local s = {seq = seq, started = now_ms, room = room, bp = bp, rate = rate, kind = kind,
  covered = cover}
redis.call('HSET', KEYS[3], 'tab', tab_id, 'room', room, 'kind', kind, 'rate', int(rate),
  'min_s', int(min_s), 'bp', int(bp), 'started', int(now_ms), 'billed', int(first),
  'amount', int(amount), 'state', 'running', 'owner', owner, 'lease', int(now_ms + lease_ms),
  'seq', int(seq), 'currency', currency, 'covered', int(cover), 'drate', int(drate))
write_session_line(KEYS[2], sid, s, amount, first)
local data = cmsgpack.pack({
  type = 'session_started', session_id = sid, room = room, kind = kind, rate = rate,
  min_s = min_s, currency = currency, started = now_ms, at = now_ms})
redis.call('XADD', KEYS[4], '*', 'k', 'sess_start:' .. customer .. ':' .. sid, 'r', room,
  't', 'session_started', 'd', data, 'cur', currency, 'earn', '0')
announce_tab(KEYS[5], tab_id, currency, state, cap, accrued, ver, burn)
return {'applied', state, cap, accrued, ver, burn, first, amount, 0}
