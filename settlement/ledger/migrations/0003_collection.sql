-- 0003_collection.sql — collection of failed payments: one case per declined or expired tab,
-- every charge attempt on it, its history, its pay links, and the journal entries that move
-- the debt off the customer's tab account (collected) or reverse it (written off).
--
-- The rules the database can hold are held here: one case per settlement; one attempt per
-- (case, attempt number), so a retry is idempotent by its number; at most one attempt in
-- flight per case and at most one approved attempt per case (partial unique indexes), so a
-- link paid while a retry approves the same debt ends in exactly one charge.

INSERT INTO entry_codes (code, name, meaning) VALUES
    (20, 'collection_capture', 'a collection case was paid: the processor owes it, the customer''s tab owes nothing'),
    (21, 'collection_earnings', 'a collected debt''s shares leave earnings_pending for the models and the platform'),
    (22, 'collection_write_off', 'a debt given up: the tab''s receivable and its pending earnings are reversed'),
    (23, 'collection_receivable', 'a debt the merchant uploaded (batch): the customer owes it, the platform''s part waits');

CREATE TABLE collection_cases (
    case_id text PRIMARY KEY CHECK (length(case_id) BETWEEN 1 AND 200),
    settlement_id text UNIQUE REFERENCES settlements (settlement_id),
    customer text NOT NULL,
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    processor text NOT NULL,
    payment_method text NOT NULL DEFAULT '',
    origin text NOT NULL CHECK (origin IN ('declined', 'expired', 'batch', 'online')),
    state text NOT NULL CHECK (state IN
        ('open', 'link_sent', 'paid', 'exhausted', 'expired', 'written_off')),
    decline_reason text NOT NULL DEFAULT '',
    advice_code text NOT NULL DEFAULT '',
    retries_n integer NOT NULL DEFAULT 0 CHECK (retries_n >= 0),
    next_retry_at timestamptz,
    contact text NOT NULL DEFAULT '',
    language text NOT NULL DEFAULT 'en',
    capture_id text UNIQUE,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    updated_at timestamptz NOT NULL,
    CHECK ((state = 'paid') = (capture_id IS NOT NULL))
);

CREATE INDEX collection_cases_due ON collection_cases (next_retry_at)
    WHERE state IN ('open', 'link_sent', 'exhausted', 'expired');
CREATE INDEX collection_cases_card ON collection_cases (payment_method);

-- Every charge attempt: an automatic retry of the card on file, or the customer paying
-- through the link. The attempt number is the idempotency key's suffix at the processor.
CREATE TABLE collection_attempts (
    case_id text NOT NULL REFERENCES collection_cases (case_id),
    attempt_no integer NOT NULL CHECK (attempt_no >= 1),
    source text NOT NULL CHECK (source IN ('retry', 'link')),
    -- The link a customer paid through (source 'link'): its failed attempts are counted.
    link_id text,
    payment_method text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'declined', 'unknown')),
    decline_reason text NOT NULL DEFAULT '',
    advice_code text NOT NULL DEFAULT '',
    capture_id text UNIQUE,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    -- The order outcomes were recorded in (times can tie): the newest answer for a card is
    -- the one whose advice code binds its next retry.
    finished_seq bigint,
    PRIMARY KEY (case_id, attempt_no)
);

CREATE SEQUENCE collection_attempts_finished;

CREATE UNIQUE INDEX collection_attempts_one_in_flight ON collection_attempts (case_id)
    WHERE status IN ('pending', 'unknown');
CREATE UNIQUE INDEX collection_attempts_one_approved ON collection_attempts (case_id)
    WHERE status = 'approved';
CREATE INDEX collection_attempts_card ON collection_attempts (payment_method, started_at)
    WHERE source = 'retry';
CREATE INDEX collection_attempts_card_last ON collection_attempts (payment_method, finished_seq)
    WHERE source = 'retry';

-- Each transition a case went through, in order: its history in the API.
CREATE TABLE collection_events (
    case_id text NOT NULL REFERENCES collection_cases (case_id),
    seq integer NOT NULL CHECK (seq >= 1),
    event text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    detail text NOT NULL DEFAULT '',
    at timestamptz NOT NULL,
    PRIMARY KEY (case_id, seq)
);

CREATE TRIGGER collection_events_append_only BEFORE UPDATE OR DELETE ON collection_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER collection_attempts_no_delete BEFORE DELETE ON collection_attempts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Pay links. The token is never stored (nor logged): only its SHA-256, to find the link.
CREATE TABLE pay_links (
    link_id text PRIMARY KEY,
    link_no bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    case_id text NOT NULL REFERENCES collection_cases (case_id),
    token_sha256 text NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    opens_max integer CHECK (opens_max IS NULL OR opens_max >= 1),
    opens_n integer NOT NULL DEFAULT 0 CHECK (opens_n >= 0),
    failed_max integer NOT NULL CHECK (failed_max >= 1),
    failed_n integer NOT NULL DEFAULT 0 CHECK (failed_n >= 0),
    created_at timestamptz NOT NULL
);

CREATE INDEX pay_links_case ON pay_links (case_id, link_no);
