-- _sessions.lua — helpers shared by the session scripts (prepended after _prelude.lua).
--
-- A session's hash holds: tab, room, kind, rate (minor units a minute), min_s, bp (the model's
-- share), started (ms), billed (seconds paid for, prepaid through the current second), amount
-- (what those seconds cost: floor(rate * billed / 60), never summed per second), state
-- (running | ended), reason, ended_at, owner (the process billing it), lease (ms: the owner
-- must renew it every tick; billing stops when it lapses), seq (its line on the tab).
-- A member's session also holds covered (seconds a plan's free allowance paid for: they are
-- delivered and cost 0) and drate (the per-minute rate after the plan's discount, fixed at the
-- start): then amount = floor(drate * (billed - covered) / 60), still computed from the whole.
-- The tab hash holds burn (the sum of its running sessions' list rates: a member's discount and
-- free seconds make the real pace slower, so "seconds left" shown from it errs on the safe
-- side) and sessions (how many run),
-- and a member's reserve (reserve_allowance.lua): free:<kind> (free seconds left in it) and
-- dbp:<kind> (the discount in basis points).

-- The price of `seconds` at `rate` a minute: the one rounding rule (metering/money.py).
local function prorate(rate, seconds)
  return floor_div(rate * seconds, 60)
end

-- The most seconds whose price stays within `budget`: the largest k with prorate(k) <= budget.
local function seconds_within(rate, budget)
  return floor_div(60 * (budget + 1) - 1, rate)
end

-- Write the session's line on the tab from its billed seconds and amount. The line also says
-- what a member's allowance covered: the free seconds, and what it saved (the list price of
-- every billed second less the amount charged), and the kind of show they were of.
local function write_session_line(lines_key, sid, s, amount, seconds)
  local covered = s.covered or 0
  redis.call('HSET', lines_key, 'sess:' .. sid, cmsgpack.pack({
    kind = 'session', id = sid, seq = s.seq, at = s.started, room = s.room, amount = amount,
    bp = s.bp, share = floor_div(amount * s.bp, 10000), seconds = seconds, rate = s.rate,
    covered = covered, saved = prorate(s.rate, seconds) - amount, skind = s.kind}))
end

-- Take up to `wanted` free seconds of `kind` from the tab's reserve (0 without one): the
-- reserve only shrinks, and never below 0, so an allowance is never spent twice.
local function take_free(tab_key, kind, wanted)
  if wanted <= 0 then
    return 0
  end
  local left = tonumber(redis.call('HGET', tab_key, 'free:' .. kind) or '0')
  local take = math.min(wanted, left)
  if take > 0 then
    redis.call('HINCRBY', tab_key, 'free:' .. kind, -take)
  end
  return take
end

-- The most paid seconds whose price at `drate` stays within `budget` (no bound at a rate of 0:
-- a 100 % discount).
local function paid_within(drate, budget, otherwise)
  if drate <= 0 then
    return otherwise
  end
  return seconds_within(drate, budget)
end

-- Bill a running session through the second begun at now_ms (prepaid:
-- floor((now - started) / 1000) + 1 seconds), as far as the cap allows: billed only grows, and
-- the amount is prorate(drate, billed - covered), computed from the whole. A member's new
-- seconds are taken from the tab's free reserve first (in this same step as the cap check, so
-- the reserve and the cap are read and written together); the rest are paid, as many as fit
-- under the cap. k = {tab, lines, session}; t = the tab's {cap, accrued}, updated. Returns
-- changed (something was billed) and short (the seconds begun did not all fit).
local function bill_through(k, sid, s, t, now_ms)
  local target = math.max(floor_div(now_ms - s.started, 1000) + 1, s.billed)
  local cover = take_free(k.tab, s.kind, target - s.billed)
  local paid_before = s.billed - s.covered
  local paid_target = paid_before + (target - s.billed - cover)
  local paid = math.min(paid_target, paid_within(s.drate, s.amount + t.cap - t.accrued,
    paid_target))
  local billed = s.billed + cover + (paid - paid_before)
  local changed = false
  if billed > s.billed then
    local amount = prorate(s.drate, paid)
    t.accrued = t.accrued + amount - s.amount
    s.billed, s.amount, s.covered, changed = billed, amount, s.covered + cover, true
    redis.call('HSET', k.tab, 'accrued', int(t.accrued), 'active_at', int(now_ms))
    redis.call('HSET', k.session, 'billed', int(billed), 'amount', int(amount),
      'covered', int(s.covered))
    write_session_line(k.lines, sid, s, amount, billed)
  end
  return changed, billed < target
end

-- Read a session's hash into a table (nil when there is no such session).
local function read_session(key)
  local f = redis.call('HMGET', key, 'tab', 'room', 'kind', 'rate', 'min_s', 'bp', 'started',
    'billed', 'amount', 'state', 'reason', 'ended_at', 'owner', 'lease', 'seq', 'currency',
    'covered', 'drate')
  if not f[1] then
    return nil
  end
  local rate = tonumber(f[4])
  return {tab = f[1], room = f[2], kind = f[3], rate = rate, min_s = tonumber(f[5]),
    bp = tonumber(f[6]), started = tonumber(f[7]), billed = tonumber(f[8]),
    amount = tonumber(f[9]), state = f[10], reason = f[11] or '',
    ended_at = tonumber(f[12] or '0'), owner = f[13], lease = tonumber(f[14]),
    seq = tonumber(f[15]), currency = f[16], covered = tonumber(f[17] or '0'),
    drate = tonumber(f[18] or f[4])}
end

-- End a running session in one step: its state and reason, the tab's burn, the room event
-- (through the outbox, with the model's share of the whole session), the tab's announcement.
-- k = {tab, lines, session, outbox, channel}; t = the tab's {state, cap, accrued, ...}.
local function finish_session(k, customer, sid, s, t, reason, now_ms)
  redis.call('HSET', k.session, 'state', 'ended', 'reason', reason, 'ended_at', int(now_ms))
  local burn = redis.call('HINCRBY', k.tab, 'burn', -s.rate)
  redis.call('HINCRBY', k.tab, 'sessions', -1)
  local ver = redis.call('HINCRBY', k.tab, 'ver', 1)
  local share = floor_div(s.amount * s.bp, 10000)
  local data = cmsgpack.pack({
    type = 'session_ended', session_id = sid, room = s.room, kind = s.kind,
    rate = s.rate, seconds = s.billed, amount = s.amount, currency = s.currency,
    share = share, reason = reason, started = s.started, at = now_ms})
  redis.call('XADD', k.outbox, '*', 'k', 'sess_end:' .. customer .. ':' .. sid, 'r', s.room,
    't', 'session_ended', 'd', data, 'cur', s.currency, 'earn', int(share))
  announce_tab(k.channel, s.tab, s.currency, t.state, t.cap, t.accrued, ver, burn)
  s.state, s.reason, s.ended_at = 'ended', reason, now_ms
  return ver, burn
end
