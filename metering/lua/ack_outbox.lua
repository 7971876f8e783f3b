-- ack_outbox.lua — delete outbox entries whose events were relayed into their rooms.
--
-- Guarantee: only entries named here go, so an event is removed from a customer's outbox only
-- after relay_room_events.lua took it (and deleting twice is harmless).
--
-- KEYS, 1 per entry: the customer's outbox stream
-- ARGV, 1 per entry: the entry id
-- Returns one integer per entry: 1 if it was deleted, 0 if it was gone already.
-- Cost: O(1) per entry (XDEL).

local results = {}
for i = 1, #KEYS do
  results[i] = redis.call('XDEL', KEYS[i], ARGV[i])
end
return results
