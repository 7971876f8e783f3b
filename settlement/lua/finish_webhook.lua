-- finish_webhook.lua — record one delivery attempt of a webhook event.
--
-- Guarantee: a delivered event leaves the queue and is remembered for the dedupe window (so it
-- is never queued again in that time); a failed one is retried at the time the caller computed
-- from its backoff, or, after its last attempt, moved to the dead-letter stream. One atomic
-- step, so an event is always in exactly one place: waiting, sent, or dead.
--
-- KEYS: [1] events hash  [2] attempts hash  [3] due set  [4] sent set  [5] dead-letter stream
-- ARGV: [1] event id  [2] delivered ('1') or failed ('0')  [3] now_ms
--       [4] next attempt time in ms (0: that was the last attempt)  [5] sent_window_ms
--       [6] sent_max  [7] dead_max (stream bound)  [8] the failure, for the dead letter
-- Returns {code, attempts} where code is, in order of precedence:
--   duplicate      the event is no longer waiting (another deliverer finished it)
--   applied        recorded (delivered, rescheduled, or dead-lettered: see the arguments)
-- Cost: O(log n).

local event_id, delivered, now_ms = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local next_ms, window_ms, sent_max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local dead_max, failure = ARGV[7], ARGV[8]

local body = redis.call('HGET', KEYS[1], event_id)
if not body then
  return {'duplicate', 0}
end
local attempts = redis.call('HINCRBY', KEYS[2], event_id, 1)
if delivered or next_ms == 0 then
  redis.call('HDEL', KEYS[1], event_id)
  redis.call('HDEL', KEYS[2], event_id)
  redis.call('ZREM', KEYS[3], event_id)
  if delivered then
    redis.call('ZADD', KEYS[4], int(now_ms), event_id)
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', int(now_ms - window_ms))
    local excess = redis.call('ZCARD', KEYS[4]) - sent_max
    if excess > 0 then
      redis.call('ZREMRANGEBYRANK', KEYS[4], 0, excess - 1)
    end
  else
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', dead_max, '*', 'event', event_id, 'body', body,
      'attempts', int(attempts), 'failure', failure, 'at', int(now_ms))
  end
else
  redis.call('ZADD', KEYS[3], int(next_ms), event_id)
end
return {'applied', attempts}
