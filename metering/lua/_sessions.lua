-- _sessions.lua — helpers shared by the session scripts (prepended after _prelude.lua).
--
-- A session's hash holds: tab, room, kind, rate (minor units a minute), min_s, bp (the model's
-- share), started (ms), billed (seconds paid for, prepaid through the current second), amount
-- (what those seconds cost: floor(rate * billed / 60), never summed per second), state
-- (running | ended), reason, ended_at, owner (the process billing it), lease (ms: the owner
-- must renew it every tick; billing stops when it lapses), seq (its line on the tab).
-- The tab hash holds burn (the sum of its running sessions' rates) and sessions (how many run).

-- The price of `seconds` at `rate` a minute: the one rounding rule (metering/money.py).
local function prorate(rate, seconds)
  return floor_div(rate * seconds, 60)
end

-- The most seconds whose price stays within `budget`: the largest k with prorate(k) <= budget.
local function seconds_within(rate, budget)
  return floor_div(60 * (budget + 1) - 1, rate)
end

-- Write the session's line on the tab from its billed seconds and amount.
local function write_session_line(lines_key, sid, s, amount, seconds)
  redis.call('HSET', lines_key, 'sess:' .. sid, cmsgpack.pack({
    kind = 'session', id = sid, seq = s.seq, at = s.started, room = s.room, amount = amount,
    bp = s.bp, share = floor_div(amount * s.bp, 10000), seconds = seconds, rate = s.rate}))
end

-- Bill a running session through the second begun at now_ms (prepaid:
-- floor((now - started) / 1000) + 1 seconds), as far as the cap allows: billed only grows, and
-- the amount is prorate(rate, billed), computed from the whole. k = {tab, lines, session};
-- t = the tab's {cap, accrued}, updated. Returns changed (something was billed) and short (the
-- seconds begun did not all fit under the cap).
local function bill_through(k, sid, s, t, now_ms)
  local target = math.max(floor_div(now_ms - s.started, 1000) + 1, s.billed)
  local fits = seconds_within(s.rate, s.amount + t.cap - t.accrued)
  local billed = math.min(target, fits)
  local changed = false
  if billed > s.billed then
    local amount = prorate(s.rate, billed)
    t.accrued = t.accrued + amount - s.amount
    s.billed, s.amount, changed = billed, amount, true
    redis.call('HSET', k.tab, 'accrued', int(t.accrued), 'active_at', int(now_ms))
    redis.call('HSET', k.session, 'billed', int(billed), 'amount', int(amount))
    write_session_line(k.lines, sid, s, amount, billed)
  end
  return changed, billed < target
end

-- Read a session's hash into a table (nil when there is no such session).
local function read_session(key)
  local f = redis.call('HMGET', key, 'tab', 'room', 'kind', 'rate', 'min_s', 'bp', 'started',
    'billed', 'amount', 'state', 'reason', 'ended_at', 'owner', 'lease', 'seq', 'currency')
  if not f[1] then
    return nil
  end
  return {tab = f[1], room = f[2], kind = f[3], rate = tonumber(f[4]), min_s = tonumber(f[5]),
    bp = tonumber(f[6]), started = tonumber(f[7]), billed = tonumber(f[8]),
    amount = tonumber(f[9]), state = f[10], reason = f[11] or '',
    ended_at = tonumber(f[12] or '0'), owner = f[13], lease = tonumber(f[14]),
    seq = tonumber(f[15]), currency = f[16]}
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
