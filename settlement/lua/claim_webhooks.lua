-- claim_webhooks.lua — take the webhook events that are due, leasing each to the caller.
--
-- Guarantee: an event is handed to one deliverer at a time while its lease runs: claiming
-- pushes its due time to now + lease_ms, so a deliverer that dies mid-delivery only delays the
-- event by the lease; another deliverer then takes it again.
--
-- KEYS: [1] events hash  [2] attempts hash  [3] due set
-- ARGV: [1] now_ms  [2] lease_ms  [3] count_max
-- Returns a flat array {event_id, body, attempts, …} of at most count_max events. An id whose
--   body is gone (delivered meanwhile) is dropped from the due set and not returned.
-- Cost: O(log n + count_max).

local now_ms, lease_ms, count_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', int(now_ms), 'LIMIT', 0, count_max)
local out = {}
for _, event_id in ipairs(due) do
  local body = redis.call('HGET', KEYS[1], event_id)
  if body then
    redis.call('ZADD', KEYS[3], int(now_ms + lease_ms), event_id)
    out[#out + 1] = event_id
    out[#out + 1] = body
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], event_id) or '0')
  else
    redis.call('ZREM', KEYS[3], event_id)
  end
end
return out
