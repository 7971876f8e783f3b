-- put_catalog_item.lua — add or replace an item of a model's catalog, within the bound.
--
-- Guarantee: a room's catalog never holds more than items_max items, however many editors
-- race (a check-then-set from two processes could each see room for one more).
--
-- KEYS: [1] room catalog hash
-- ARGV: [1] item_id  [2] item (JSON, validated by server/catalog.py)  [3] items_max
-- Returns {code, items}: `applied` (added or replaced) or `catalog_full`; items is the count
--   after the call.
-- Cost: O(1): HEXISTS, HLEN, HSET.

local item_id, item, items_max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local count = redis.call('HLEN', KEYS[1])
if redis.call('HEXISTS', KEYS[1], item_id) == 0 and count >= items_max then
  return {'catalog_full', count}
end
redis.call('HSET', KEYS[1], item_id, item)
return {'applied', redis.call('HLEN', KEYS[1])}
