-- 0010_purchase_lines.sql — catalog purchases (issue 17, docs/purchases.md) are recorded as
-- lines of their own kind, with the item they bought and its kind, rather than as tips.

-- A purchase line's item: its catalog id, its name as it was charged (a later edit of the
-- catalog changes no record) and its kind. A tip or a session line has none; a purchase line
-- recorded from this migration on has all three. Lines recorded before it as tips (line id
-- `buy:...`) become purchases with an unknown item ('' in all three): the meter's record of
-- them has long expired, and refunds, collection and the console treat both kinds alike.
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_kind_check;
ALTER TABLE settlement_lines ADD COLUMN item_id text NOT NULL DEFAULT ''
    CHECK (char_length(item_id) <= 80);
ALTER TABLE settlement_lines ADD COLUMN item_name text NOT NULL DEFAULT ''
    CHECK (char_length(item_name) <= 80);
ALTER TABLE settlement_lines ADD COLUMN purchase_kind text NOT NULL DEFAULT ''
    CHECK (purchase_kind IN ('', 'request', 'unlock'));

-- The lines are append-only (refuse_change); this one correction of the kind is the
-- migration's, made under its lock, in its transaction.
ALTER TABLE settlement_lines DISABLE TRIGGER settlement_lines_append_only;
UPDATE settlement_lines SET kind = 'purchase' WHERE kind = 'tip' AND line_id LIKE 'buy:%';
ALTER TABLE settlement_lines ENABLE TRIGGER settlement_lines_append_only;

ALTER TABLE settlement_lines ADD CONSTRAINT settlement_lines_kind_check
    CHECK (kind IN ('tip', 'session', 'purchase'));
-- Only a purchase names an item; a purchase line's id is `buy:<purchase id>`, a tip's never is.
ALTER TABLE settlement_lines ADD CONSTRAINT settlement_lines_purchase_item
    CHECK ((kind = 'purchase') = (line_id LIKE 'buy:%')
        AND (kind = 'purchase' OR (item_id = '' AND item_name = '' AND purchase_kind = '')));
