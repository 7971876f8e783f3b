-- retire_tab.lua — mark a settled tab's follow-ups done and let its keys expire.
--
-- Guarantee: called only once the tab's outcome is in the ledger of record (PostgreSQL), so
-- from here on Redis may forget the tab: its hash, its lines and the hashes of the shows it
-- paid for expire after the retention, and every reader falls back to the ledger. A tab that
-- is not past settling (open or settling) is never touched. Repeating it is harmless: the
-- mark is set again and the expiry is not pushed back (NX: only keys with no expiry yet).
--
-- KEYS: [1] tab hash  [2] tab lines hash  [3..] session hashes of the tab's shows
-- ARGV: [1] retention_ms  [2] states the tab may be retired in (",settled,failed,...,")
-- Returns {code, state} where code is, in order:
--   tab_not_found      no such tab (already expired)
--   tab_not_settling   the tab is not past settling: nothing was changed
--   applied
-- Cost: O(1) + O(1) per show: one HGET, one HSET, one PEXPIRE per key.

local retention_ms, allowed = tonumber(ARGV[1]), ARGV[2]

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'tab_not_found', ''}
end
if not in_states(allowed, state) then
  return {'tab_not_settling', state}
end
redis.call('HSET', KEYS[1], 'followups_done', '1')
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) == -1 then
    redis.call('PEXPIRE', KEYS[i], retention_ms)
  end
end
return {'applied', state}
