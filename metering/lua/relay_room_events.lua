-- relay_room_events.lua — append events to their rooms' streams, each at most once.
--
-- This is the second step of anything that crosses from a customer's keys into a room's keys
-- (a tip is applied on the customer's tag, its event lands on the room's tag). The first step
-- queued the event in the customer's outbox under a unique event key; this step appends it to
-- the room's stream, credits the model's live earnings and announces it on the room's sharded
-- channel, unless that event key was relayed already. So relaying twice (a retry, a crash
-- between relaying and deleting the outbox entry) changes nothing.
--
-- KEYS, 4 per event: [1] room events stream  [2] room relayed set  [3] room earnings hash
--   [4] room live channel (a key so that Redis Cluster routes and checks it like one)
-- ARGV: [1] now_ms  [2] events_max (stream bound)  [3] relayed_window_ms  [4] relayed_max
--   then 5 per event: event key, type, data (msgpack), earnings currency, earnings minor
-- The stream entry holds `t` (type), `d` (data) and, for events that earn the model money, `e`:
-- the model's earnings in that currency after this event (the live total a model console shows).
-- The channel message is msgpack {stream_id, type, data, earned_total}.
-- Returns one array per event: {code, stream_id} with code `applied` or `duplicate` (then
--   stream_id is '').
-- Cost: O(log n) per event (ZSCORE, ZADD, XADD with approximate trimming), plus the trimming
--   of relay records older than the window, amortised O(1).

local now_ms, events_max = tonumber(ARGV[1]), ARGV[2]
local window_ms, relayed_max = tonumber(ARGV[3]), tonumber(ARGV[4])
local FIXED, PER_EVENT = 4, 5

local function relay(events_key, relayed_key, earnings_key, channel, a)
  local event_key, event_type, data = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local currency, earned = ARGV[a + 4], tonumber(ARGV[a + 5])
  if redis.call('ZSCORE', relayed_key, event_key) then
    return {'duplicate', ''}
  end
  local total = 0
  if earned > 0 then
    total = redis.call('HINCRBY', earnings_key, 'accrued:' .. currency, int(earned))
  end
  local id = redis.call('XADD', events_key, 'MAXLEN', '~', events_max, '*',
    't', event_type, 'd', data, 'e', int(total))
  redis.call('ZADD', relayed_key, int(now_ms), event_key)
  redis.call('ZREMRANGEBYSCORE', relayed_key, '-inf', int(now_ms - window_ms))
  local excess = redis.call('ZCARD', relayed_key) - relayed_max
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', relayed_key, 0, excess - 1)
  end
  redis.call('SPUBLISH', channel, cmsgpack.pack({id, event_type, data, total}))
  return {'applied', id}
end

local results = {}
for i = 0, (#ARGV - FIXED) / PER_EVENT - 1 do
  results[i + 1] = relay(KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4],
    FIXED + PER_EVENT * i)
end
return results
