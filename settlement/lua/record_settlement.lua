-- record_settlement.lua — record how a tab's settlement ended: captured, declined, voided or
-- expired. This is the one step that takes a tab out of `settling`.
--
-- Guarantee: a tab gets exactly one outcome. The state change and everything a later reader
-- needs (the capture id and amount, the decline reason and whether card-network rules allow a
-- retry, the time) are written in the same atomic step. A capture is recorded only for the
-- amount fixed by begin_settlement.lua, so the capture equals the accrued amount (conservation)
-- or nothing is written. Recording again returns the first outcome and changes nothing.
--
-- KEYS: [1] tab hash  [2] customer live channel (the new state is announced there)
-- ARGV: [1] outcome name (captured | declined | voided | expired)
--       [2] states the outcome's event is allowed in (",settling,")  [3] the state it leads to
--       [4] now_ms  [5] amount captured (0 unless captured)  [6] capture id ('' unless captured)
--       [7] amount released from the hold  [8] decline reason ('' unless declined)
--       [9] retry allowed by card-network rules ('1' or '0')  [10] tab id
-- Returns {code, state, outcome, capture_id, outcome_at_ms} where code is, in order:
--   tab_not_found     no such tab
--   duplicate         an outcome was recorded before; the original is returned
--   tab_not_settling  the tab is not frozen for settlement
--   amount_mismatch   a capture whose amount is not the recorded amount (nothing written)
--   applied
-- Cost: O(1): one HMGET, one HSET, one HINCRBY, one SPUBLISH.

local outcome, allowed, next_state = ARGV[1], ARGV[2], ARGV[3]
local now_ms, captured, capture_id = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local released, reason, retryable, tab_id = tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]

local t = redis.call('HMGET', KEYS[1], 'state', 'outcome', 'capture_id', 'outcome_at',
  'settle_amount', 'accrued', 'currency', 'cap', 'burn')
if not t[1] then
  return {'tab_not_found', '', '', '', 0}
end
if t[2] then
  return {'duplicate', t[1], t[2], t[3] or '', tonumber(t[4])}
end
if not in_states(allowed, t[1]) then
  return {'tab_not_settling', t[1], '', '', 0}
end
-- The amount a capture must match: the one recorded before the gateway call, or (for an
-- outcome decided without a call) the frozen accrued amount, which cannot move while settling.
local fixed = tonumber(t[5] or t[6])
if outcome == 'captured' and captured ~= fixed then
  return {'amount_mismatch', t[1], '', '', 0}
end

redis.call('HSET', KEYS[1], 'state', next_state, 'outcome', outcome,
  'outcome_at', int(now_ms), 'captured', int(captured), 'capture_id', capture_id,
  'released', int(released), 'decline_reason', reason, 'retryable', retryable)
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
announce_tab(KEYS[2], tab_id, t[7], next_state, tonumber(t[8]), tonumber(t[6]), ver,
  tonumber(t[9] or '0'))
return {'applied', next_state, outcome, capture_id, now_ms}
