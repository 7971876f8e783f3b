-- read_tab.lua — read a tab and its itemized lines as one consistent snapshot.
--
-- Guarantee: the fields and the lines come from the same instant, so accrued equals the sum of
-- the lines in every snapshot (two separate reads could straddle a tip).
--
-- KEYS: [1] tab hash  [2] tab lines hash
-- ARGV: none
-- Returns {tab fields as a flat HGETALL array, lines as a flat HGETALL array}; the first is
--   empty when the tab does not exist.
-- Cost: O(number of lines); a tab has at most `lines_max` lines.

return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
