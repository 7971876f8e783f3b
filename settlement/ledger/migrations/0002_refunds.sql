-- 0002_refunds.sql — refunds, disputes (chargebacks) and the customers they flag.
--
-- The bound every refund and dispute obeys is held here, not in Python: each refundable line
-- and each refundable tab keeps what was captured, refunded and disputed, with a CHECK that
-- refunded + disputed never exceeds captured. A refund takes the tab's row lock, then its
-- lines' (in line order), raises those counters and commits; a concurrent refund waits on the
-- lock and then sees the raised counters, so however many requests race, from however many
-- processes, the sum stays within the capture (the CHECK refuses anything past it).

INSERT INTO account_kinds (kind, meaning) VALUES
    ('disputes_open', 'money a processor took back through an open dispute, waiting for its outcome (per currency)');

INSERT INTO entry_codes (code, name, meaning) VALUES
    (10, 'refund', 'money returned to the customer: the model''s and the platform''s shares taken back in proportion'),
    (11, 'dispute_opened', 'a chargeback: the processor took the disputed amount and its fee; the model''s share taken back'),
    (12, 'dispute_won', 'a dispute won: the disputed amount comes back, the model''s share is restored, the fee is lost'),
    (13, 'dispute_lost', 'a dispute lost: the open dispute becomes a chargeback loss');

-- What may still be taken back from one settled, captured tab (one row per tab, made on its
-- first refund or dispute).
CREATE TABLE refundable_tabs (
    settlement_id text PRIMARY KEY REFERENCES settlements (settlement_id),
    captured_minor bigint NOT NULL CHECK (captured_minor > 0),
    refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    disputed_minor bigint NOT NULL DEFAULT 0 CHECK (disputed_minor >= 0),
    CHECK (refunded_minor + disputed_minor <= captured_minor)
);

-- The same per line; model_taken_minor is the model's part of the line taken back so far,
-- always model_part(refunded + disputed, captured, share) (settlement.refunds.split).
CREATE TABLE refundable_lines (
    settlement_id text NOT NULL REFERENCES refundable_tabs (settlement_id),
    line_id text NOT NULL,
    room text NOT NULL,
    captured_minor bigint NOT NULL CHECK (captured_minor > 0),
    share_minor bigint NOT NULL CHECK (share_minor >= 0 AND share_minor <= captured_minor),
    refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    disputed_minor bigint NOT NULL DEFAULT 0 CHECK (disputed_minor >= 0),
    model_taken_minor bigint NOT NULL DEFAULT 0
        CHECK (model_taken_minor >= 0 AND model_taken_minor <= share_minor),
    PRIMARY KEY (settlement_id, line_id),
    FOREIGN KEY (settlement_id, line_id) REFERENCES settlement_lines (settlement_id, line_id),
    CHECK (refunded_minor + disputed_minor <= captured_minor)
);

-- Every refund request, with the policy's decision, whatever became of it.
CREATE TABLE refunds (
    refund_id text PRIMARY KEY CHECK (length(refund_id) BETWEEN 1 AND 64),
    settlement_id text NOT NULL REFERENCES settlements (settlement_id),
    customer text NOT NULL,
    tab_id text NOT NULL,
    processor text NOT NULL,
    capture_id text NOT NULL,
    currency char(3) NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    reason text NOT NULL,
    status text NOT NULL CHECK (status IN (
        'pending', 'succeeded', 'failed', 'refused', 'awaiting_consent', 'declined')),
    request jsonb NOT NULL,
    decision jsonb NOT NULL,
    decided_by text NOT NULL DEFAULT '',
    decided_at timestamptz,
    processor_refund_id text UNIQUE,
    processor_ref text NOT NULL DEFAULT '',
    failure text NOT NULL DEFAULT '',
    requested_at timestamptz NOT NULL,
    finished_at timestamptz
);

CREATE INDEX refunds_settlement ON refunds (settlement_id);
CREATE INDEX refunds_status ON refunds (status) WHERE status IN ('pending', 'awaiting_consent');

-- Each line a refund takes back from, and how the amount splits between model and platform.
CREATE TABLE refund_lines (
    refund_id text NOT NULL REFERENCES refunds (refund_id),
    line_id text NOT NULL,
    room text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    model_minor bigint NOT NULL CHECK (model_minor >= 0),
    platform_minor bigint NOT NULL CHECK (platform_minor >= 0),
    PRIMARY KEY (refund_id, line_id),
    CHECK (model_minor + platform_minor = amount_minor)
);

-- Disputes (chargebacks), idempotent by the processor's dispute id.
CREATE TABLE disputes (
    processor text NOT NULL,
    dispute_id text NOT NULL,
    settlement_id text NOT NULL REFERENCES settlements (settlement_id),
    customer text NOT NULL,
    capture_id text NOT NULL,
    currency char(3) NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    fee_minor bigint NOT NULL CHECK (fee_minor >= 0),
    reason text NOT NULL DEFAULT '',
    status text NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    notices jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (processor, dispute_id),
    CHECK ((status = 'open') = (closed_at IS NULL))
);

CREATE UNIQUE INDEX disputes_by_id ON disputes (dispute_id);
CREATE INDEX disputes_opened_at ON disputes (processor, opened_at);
CREATE INDEX disputes_settlement ON disputes (settlement_id);

CREATE TABLE dispute_lines (
    dispute_id text NOT NULL REFERENCES disputes (dispute_id),
    line_id text NOT NULL,
    room text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    model_minor bigint NOT NULL CHECK (model_minor >= 0),
    platform_minor bigint NOT NULL CHECK (platform_minor >= 0),
    PRIMARY KEY (dispute_id, line_id),
    CHECK (model_minor + platform_minor = amount_minor)
);

-- Customers a dispute flagged: no new tab until support clears the flag.
CREATE TABLE customer_flags (
    customer text PRIMARY KEY,
    reason text NOT NULL,
    dispute_id text NOT NULL DEFAULT '',
    flagged_at timestamptz NOT NULL,
    cleared_at timestamptz,
    cleared_by text NOT NULL DEFAULT ''
);

CREATE TRIGGER refund_lines_append_only BEFORE UPDATE OR DELETE ON refund_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER dispute_lines_append_only BEFORE UPDATE OR DELETE ON dispute_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER refunds_no_delete BEFORE DELETE ON refunds
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER disputes_no_delete BEFORE DELETE ON disputes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
