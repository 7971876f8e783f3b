-- cap_check.lua — the baseline's only script: spend against a cap, never past it.
--
-- The floor any server on this stack pays per tip: one atomic check-and-add per frame, batched
-- across connections like the product's tips.
--
-- KEYS, 1 per item: the connection's counter hash
-- ARGV: [1] cap_minor, then 1 per item: amount_minor
-- Returns one integer per item: 1 (applied) or 0 (over the cap).
-- Cost: O(1) per item: one HGET, at most one HINCRBY.

local cap = tonumber(ARGV[1])
local results = {}
for i = 1, #KEYS do
  local amount = tonumber(ARGV[i + 1])
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  if spent + amount <= cap then
    redis.call('HINCRBY', KEYS[i], 'spent', amount)
    results[i] = 1
  else
    results[i] = 0
  end
end
return results
