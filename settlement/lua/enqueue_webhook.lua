-- enqueue_webhook.lua — queue one webhook event for delivery, at most once per event id.
--
-- Guarantee: an event id is queued once: while it waits, and for the dedupe window after its
-- delivery, queueing it again changes nothing. So the settlement worker may queue the event of
-- a tab again after a crash without the cam site receiving it twice from us (a delivery that
-- timed out after the cam site got it is still repeated: receivers dedupe by event id).
--
-- KEYS: [1] events hash  [2] attempts hash  [3] due set  [4] sent set
-- ARGV: [1] event id  [2] body (JSON)  [3] now_ms  [4] events_max (waiting events at most)
-- Returns {code} where code is, in order of precedence:
--   duplicate  the event waits already, or was delivered within the dedupe window
--   busy       events_max events wait already (deliveries are behind); retry later
--   applied
-- Cost: O(log n): HEXISTS, ZSCORE, HLEN, HSET, ZADD.

local event_id, body, now_ms, events_max = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('HEXISTS', KEYS[1], event_id) == 1 or redis.call('ZSCORE', KEYS[4], event_id) then
  return {'duplicate'}
end
if redis.call('HLEN', KEYS[1]) >= events_max then
  return {'busy'}
end
redis.call('HSET', KEYS[1], event_id, body)
redis.call('HSET', KEYS[2], event_id, '0')
redis.call('ZADD', KEYS[3], int(now_ms), event_id)
return {'applied'}
