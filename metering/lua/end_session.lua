-- end_session.lua — end a running session for a reason from outside the tick.
--
-- Guarantee: a session ends once, with the first reason given; nothing is billed after its
-- end (the tick refuses ended sessions). Reasons: viewer_left, model_left, stopped (either side
-- stopped it), owner_lost (the reaper: only once the owner's lease has lapsed, so a live owner
-- is never robbed of a session it is billing).
--
-- KEYS: [1] tab hash  [2] tab lines hash  [3] session hash  [4] customer outbox
--   [5] customer live channel
-- ARGV: [1] now_ms  [2] customer  [3] session_id  [4] reason  [5] only_if_lease_lapsed ('1'|'0')
-- Returns {code, billed, amount, accrued, cap, burn, ver, reason, room}, code in order:
--   session_not_found | duplicate (already ended: its reason) | lease_alive | applied
-- Cost: O(1).

local now_ms, customer, sid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local reason, only_if_lapsed = ARGV[4], ARGV[5] == '1'

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
local ver, burn = finish_session(k, customer, sid, s, t, reason, now_ms)
return {'applied', s.billed, s.amount, t.accrued, t.cap, burn, ver, reason, s.room}
