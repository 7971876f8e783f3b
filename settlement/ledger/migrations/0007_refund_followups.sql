-- 0007_refund_followups.sql — the rest of the refunds issue (docs/refunds.md): the model's
-- consent per room, answered live on her console; customers' own refund requests with their
-- attachments; tip messages kept for the evidence; the model's share held (not taken back)
-- during a dispute; refunds of a tab captured once per hold against the right capture.

-- A model's share held while a dispute is open: still hers, not payable until the outcome.
INSERT INTO account_kinds (kind, meaning) VALUES
    ('model_held', 'a model''s share of disputed lines, held until the dispute''s outcome (per room and currency)');

-- Whether a dispute took the model's share back at once, or holds it until the outcome
-- (TIPMETER_DISPUTE_MODEL_SHARE when the dispute opened; its outcome follows the same way).
ALTER TABLE disputes ADD COLUMN model_share text NOT NULL DEFAULT 'take_back'
    CHECK (model_share IN ('take_back', 'hold'));

-- A tip's message as the viewer sent it (bounded like the wire protocol's), for the evidence.
ALTER TABLE settlement_lines ADD COLUMN message text NOT NULL DEFAULT ''
    CHECK (char_length(message) <= 255);

-- Who asked: the cam site's backend (merchant) or the customer from her statement (customer),
-- with her own words; and when an unanswered consent request went to support (escalated).
ALTER TABLE refunds ADD COLUMN origin text NOT NULL DEFAULT 'merchant'
    CHECK (origin IN ('merchant', 'customer'));
ALTER TABLE refunds ADD COLUMN note text NOT NULL DEFAULT '' CHECK (char_length(note) <= 2000);
ALTER TABLE refunds ADD COLUMN escalated_at timestamptz;
CREATE INDEX refunds_customer ON refunds (customer, requested_at);

-- Each model room whose consent a refund waits for, and her answer (who and when). The refund
-- goes on once every room accepted; the first decline ends it.
CREATE TABLE refund_consents (
    refund_id text NOT NULL REFERENCES refunds (refund_id),
    room text NOT NULL,
    answer text CHECK (answer IN ('accepted', 'declined')),
    answered_by text NOT NULL DEFAULT '',
    answered_at timestamptz,
    PRIMARY KEY (refund_id, room),
    CHECK ((answer IS NULL) = (answered_at IS NULL))
);

CREATE INDEX refund_consents_waiting ON refund_consents (room) WHERE answer IS NULL;

-- A customer's attachments (receipts, screenshots): few, small, of three types checked by
-- their content. Kept in the database, outside any web root, and served to staff only, as
-- downloads (never rendered inline).
CREATE TABLE refund_attachments (
    refund_id text NOT NULL REFERENCES refunds (refund_id),
    n smallint NOT NULL CHECK (n BETWEEN 1 AND 3),
    content_type text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'application/pdf')),
    size_bytes integer NOT NULL CHECK (size_bytes BETWEEN 1 AND 1048576),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    filename text NOT NULL DEFAULT '' CHECK (char_length(filename) <= 100),
    content bytea NOT NULL CHECK (octet_length(content) = size_bytes),
    PRIMARY KEY (refund_id, n)
);

-- What a refund of a tab settled by several captures (one per hold) takes from each capture.
-- Σ per capture ≤ what that capture took is decided under the tab's row lock, like the lines.
CREATE TABLE refund_captures (
    refund_id text NOT NULL REFERENCES refunds (refund_id),
    auth_ref text NOT NULL,
    capture_no smallint NOT NULL CHECK (capture_no >= 0),
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    capture_id text NOT NULL DEFAULT '',
    processor_refund_id text NOT NULL DEFAULT '',
    PRIMARY KEY (refund_id, auth_ref)
);

CREATE TRIGGER refund_attachments_append_only BEFORE UPDATE OR DELETE ON refund_attachments
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
