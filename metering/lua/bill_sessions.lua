-- bill_sessions.lua — the once-a-second tick: bill every running session of this owner
-- through the current second, end those that cannot go on, renew the owner's leases.
--
-- Guarantee, per session: a second is billed at most once — `billed` only grows, and the
-- amount is always prorate(rate, billed), computed from the whole, never summed — and only
-- while the tab accepts spending, the cap holds (accrued <= cap), and the owner's lease is
-- alive (a stalled owner's session ends `owner_lost` at its next tick, or by the reaper,
-- without billing the time it was away). A session ends here with `cap_reached` (the next
-- second does not fit: the seconds that fit are billed first), `settling` (the tab froze) or
-- `owner_lost`. Billing is prepaid: after a tick, the current second is paid for.
-- On a member's tab the new seconds come from the tab's free reserve (free:<kind>) first, in
-- this same step as the cap check; the rest are paid at the session's discounted rate
-- (_sessions.lua bill_through; docs/sessions.md).
--
-- Sessions are batched: one call carries many, each with its own five keys; on Redis Cluster
-- a call only carries sessions whose keys share one slot.
--
-- KEYS, 5 per session: tab hash, tab lines hash, session hash, customer outbox, customer channel
-- ARGV: [1] now_ms  [2] owner  [3] lease_ms  [4] spendable states
--   then 2 per session: customer, session_id
-- Returns one array per session: {code, billed, amount, accrued, cap, burn, ver, reason}, code:
--   gone (no such session) | not_owner (another process bills it now) | ended (it had ended:
--   reason) | finished (it ended in this tick: reason) | running
-- Cost: O(1) per session: 2 HMGET, 1 HGET, up to 4 HSET and 1 HINCRBY (free seconds taken),
-- 1 SPUBLISH; 3 HINCRBY and 1 XADD when it ends.

local now_ms, owner, lease_ms, spendable = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local FIXED, PER = 4, 2

local function tick(k, customer, sid)
  local s = read_session(k.session)
  if not s then
    return {'gone', 0, 0, 0, 0, 0, 0, ''}
  end
  if s.state ~= 'running' then
    return {'ended', s.billed, s.amount, 0, 0, 0, 0, s.reason}
  end
  if s.owner ~= owner then
    return {'not_owner', s.billed, s.amount, 0, 0, 0, 0, ''}
  end
  local f = redis.call('HMGET', k.tab, 'state', 'cap', 'accrued', 'ver', 'burn')
  local t = {state = f[1], cap = tonumber(f[2]), accrued = tonumber(f[3])}
  local ver, burn = tonumber(f[4]), tonumber(f[5] or '0')
  local reason, changed = nil, false
  if not in_states(spendable, t.state) then
    reason = 'settling'
  elseif s.lease < now_ms then
    reason = 'owner_lost'
  else
    local short
    changed, short = bill_through(k, sid, s, t, now_ms)
    if changed then
      ver = redis.call('HINCRBY', k.tab, 'ver', 1)
    end
    if short then
      reason = 'cap_reached'
      redis.call('HSETNX', k.tab, 'exhausted_at', int(now_ms))
    end
  end
  if reason then
    ver, burn = finish_session(k, customer, sid, s, t, reason, now_ms)
    return {'finished', s.billed, s.amount, t.accrued, t.cap, burn, ver, reason}
  end
  if changed then
    announce_tab(k.channel, s.tab, s.currency, t.state, t.cap, t.accrued, ver, burn)
  end
  redis.call('HSET', k.session, 'lease', int(now_ms + lease_ms))
  return {'running', s.billed, s.amount, t.accrued, t.cap, burn, ver, ''}
end

local results = {}
for i = 0, (#ARGV - FIXED) / PER - 1 do
  local b = 5 * i
  local k = {tab = KEYS[b + 1], lines = KEYS[b + 2], session = KEYS[b + 3],
    outbox = KEYS[b + 4], channel = KEYS[b + 5]}
  results[i + 1] = tick(k, ARGV[FIXED + PER * i + 1], ARGV[FIXED + PER * i + 2])
end
return results
