-- end_session.lua — end a running session for a reason from outside the tick.
--
-- Guarantee: a session ends once, with the first reason given; nothing is billed after its
-- end (the tick refuses ended sessions). Reasons: viewer_left, model_left, stopped (either side
-- stopped it), owner_lost (the reaper: only once the owner's lease has lapsed, so a live owner
-- is never robbed of a session it is billing).
--
-- Prepaid through the last second begun (docs/sessions.md): a session ended viewer_left,
-- model_left or stopped while its owner's lease is alive and its tab accepts spending is first
-- billed through the second begun at now_ms (as far as the cap allows), since the owner's last
-- tick may be up to a second old. owner_lost bills nothing after the last tick (the time the
-- owner was away was not delivered). That last bill takes a member's free seconds first, like
-- a tick (_sessions.lua bill_through).
--
-- KEYS: [1] tab hash  [2] tab lines hash  [3] session hash  [4] customer outbox
--   [5] customer live channel
-- ARGV: [1] now_ms  [2] customer  [3] session_id  [4] reason  [5] only_if_lease_lapsed ('1'|'0')
--   [6] spendable states
-- Returns {code, billed, amount, accrued, cap, burn, ver, reason, room}, code in order:
--   session_not_found | duplicate (already ended: its reason) | lease_alive | applied
-- Cost: O(1).

local now_ms, customer, sid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local reason, only_if_lapsed, spendable = ARGV[4], ARGV[5] == '1', ARGV[6]
local BILLS_BEGUN_SECOND = {viewer_left = true, model_left = true, stopped = true}

local s = read_session(KEYS[3])
if not s then
  return {'session_not_found', 0, 0, 0, 0, 0, 0, '', ''}
end
if s.state ~= 'running' then
  return {'duplicate', s.billed, s.amount, 0, 0, 0, 0, s.reason, s.room}
end
if only_if_lapsed and s.lease >= now_ms then
  return {'lease_alive', s.billed, s.amount, 0, 0, 0, 0, '', s.room}
end
local f = redis.call('HMGET', KEYS[1], 'state', 'cap', 'accrued')
local t = {state = f[1], cap = tonumber(f[2]), accrued = tonumber(f[3])}
local k = {tab = KEYS[1], lines = KEYS[2], session = KEYS[3], outbox = KEYS[4], channel = KEYS[5]}
if BILLS_BEGUN_SECOND[reason] and s.lease >= now_ms and in_states(spendable, t.state) then
  bill_through(k, sid, s, t, now_ms)
end
local ver, burn = finish_session(k, customer, sid, s, t, reason, now_ms)
return {'applied', s.billed, s.amount, t.accrued, t.cap, burn, ver, reason, s.room}
