-- credit_earnings.lua — credit each model's share of a capture to the model's earnings ledger,
-- at most once per settlement.
--
-- This is the second step of a capture (the first, record_settlement.lua, ran on the
-- customer's hash tag; a room's keys carry the room's tag). It is idempotent by settlement id:
-- the room remembers which settlements it was credited for, so a worker that crashed after
-- crediting and before acknowledging credits nothing the second time.
--
-- KEYS, 3 per credit: [1] room earnings hash  [2] room ledger stream  [3] room credited set
-- ARGV: [1] now_ms  [2] ledger_max (stream bound)  [3] credited_window_ms  [4] credited_max
--   then 7 per credit: settlement id, currency, share_minor, gross_minor, customer, tab_id,
--   capture_id
-- Returns one array per credit: {code, ledger_id} with code applied, or duplicate (then
--   ledger_id is '').
-- Cost: O(log n) per credit (ZSCORE, ZADD, XADD with approximate trimming, HINCRBY), plus the
--   trimming of old dedupe records, amortised O(1).

local now_ms, ledger_max = tonumber(ARGV[1]), ARGV[2]
local window_ms, credited_max = tonumber(ARGV[3]), tonumber(ARGV[4])
local FIXED, PER_CREDIT = 4, 7

local function credit(earnings_key, ledger_key, credited_key, a)
  local settlement, currency = ARGV[a + 1], ARGV[a + 2]
  local share, gross = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if redis.call('ZSCORE', credited_key, settlement) then
    return {'duplicate', ''}
  end
  local id = redis.call('XADD', ledger_key, 'MAXLEN', '~', ledger_max, '*',
    'settlement', settlement, 'currency', currency, 'share', int(share), 'gross', int(gross),
    'customer', ARGV[a + 5], 'tab', ARGV[a + 6], 'capture', ARGV[a + 7], 'at', int(now_ms))
  redis.call('HINCRBY', earnings_key, 'settled:' .. currency, int(share))
  redis.call('HINCRBY', earnings_key, 'settled_gross:' .. currency, int(gross))
  redis.call('ZADD', credited_key, int(now_ms), settlement)
  redis.call('ZREMRANGEBYSCORE', credited_key, '-inf', int(now_ms - window_ms))
  local excess = redis.call('ZCARD', credited_key) - credited_max
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', credited_key, 0, excess - 1)
  end
  return {'applied', id}
end

local results = {}
for i = 0, (#ARGV - FIXED) / PER_CREDIT - 1 do
  results[i + 1] = credit(KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3], FIXED + PER_CREDIT * i)
end
return results
