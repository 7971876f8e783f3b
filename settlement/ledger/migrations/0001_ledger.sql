-- 0001_ledger.sql — the ledger of record: accounts, a double-entry journal, settlements with
-- their itemized lines, shows and model earnings, holds, and webhook deliveries.
--
-- Money is bigint minor units beside a currency column; times are timestamptz. The rules the
-- database can hold are held here: every journal entry balances to zero per currency (a
-- deferred constraint trigger, checked at commit), postings and entries are append-only, every
-- client-minted or processor id is UNIQUE, and a settlement's lines and shares add up to its
-- amount (another deferred trigger).

CREATE TABLE account_kinds (
    kind text PRIMARY KEY,
    meaning text NOT NULL
);

INSERT INTO account_kinds (kind, meaning) VALUES
    ('customer_tab', 'what a customer owes on one tab: debited by the charge, credited by the capture'),
    ('processor_clearing', 'what a processor owes the platform for captures (per processor and currency)'),
    ('model_payable', 'what the platform owes a model room (per room and currency)'),
    ('platform_revenue', 'the platform''s share of every charge (per currency)'),
    ('earnings_pending', 'shares of a charge that was not collected yet (per currency)'),
    ('refunds', 'money returned to customers (per currency)'),
    ('chargebacks', 'money taken back by card networks through disputes (per currency)'),
    ('tax_payable', 'tax collected on behalf of tax authorities (per currency)');

CREATE TABLE accounts (
    account_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE,
    kind text NOT NULL REFERENCES account_kinds (kind),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    owner text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, currency)
);

CREATE TABLE entry_codes (
    code smallint PRIMARY KEY CHECK (code > 0),
    name text NOT NULL UNIQUE,
    meaning text NOT NULL
);

INSERT INTO entry_codes (code, name, meaning) VALUES
    (1, 'tab_charge', 'a settled tab''s lines: the customer owes them, models and platform earn'),
    (2, 'tab_capture', 'the processor captured the tab: it owes the platform, the customer owes nothing'),
    (3, 'tab_receivable', 'a declined or expired tab: the customer owes it, earnings wait for collection');

CREATE TABLE journal_entries (
    entry_id text PRIMARY KEY CHECK (length(entry_id) BETWEEN 1 AND 200),
    code smallint NOT NULL REFERENCES entry_codes (code),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    settlement_id text,
    posted_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX journal_entries_settlement ON journal_entries (settlement_id);
CREATE INDEX journal_entries_posted_at ON journal_entries (posted_at);

-- One posting moves amount_minor into (positive: debit) or out of (negative: credit) an
-- account. The account's currency must be the posting's: the composite key holds it.
CREATE TABLE postings (
    entry_id text NOT NULL REFERENCES journal_entries (entry_id),
    posting_no smallint NOT NULL CHECK (posting_no >= 1),
    account_id bigint NOT NULL,
    currency char(3) NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (entry_id, posting_no),
    FOREIGN KEY (account_id, currency) REFERENCES accounts (account_id, currency)
);

CREATE INDEX postings_account ON postings (account_id);

-- Every journal entry's postings sum to zero in each currency, and an entry has at least two
-- postings. Checked at commit (deferred), so an entry and its postings are written in any
-- order inside one transaction, and a transaction that leaves one unbalanced fails whole.
CREATE FUNCTION check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
    postings_n int;
BEGIN
    SELECT count(*) INTO postings_n FROM postings WHERE entry_id = NEW.entry_id;
    IF postings_n < 2 THEN
        RAISE EXCEPTION 'journal entry % has % posting(s); at least two are needed',
            NEW.entry_id, postings_n USING ERRCODE = 'check_violation';
    END IF;
    SELECT string_agg(currency || ' ' || total::text, ', ') INTO unbalanced
    FROM (
        SELECT currency, sum(amount_minor) AS total FROM postings
        WHERE entry_id = NEW.entry_id GROUP BY currency HAVING sum(amount_minor) <> 0
    ) AS off;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % does not balance: %', NEW.entry_id, unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER journal_entry_balanced
    AFTER INSERT ON journal_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();

CREATE CONSTRAINT TRIGGER posting_balanced
    AFTER INSERT ON postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();

-- The record of money is append-only: a correction is a new entry, never an edit.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Holds: each authorization a tab was opened or raised with, idempotent by its key. The
-- payment method is the processor's token for the card on file (what collection retries).
CREATE TABLE holds (
    idempotency_key text PRIMARY KEY,
    customer text NOT NULL,
    tab_id text NOT NULL,
    processor text NOT NULL,
    auth_ref text NOT NULL,
    payment_method text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('authorize', 'increment')),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    expires_at timestamptz,
    processor_ref text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL
);

CREATE INDEX holds_tab ON holds (customer, tab_id);
CREATE INDEX holds_auth_ref ON holds (auth_ref);

-- One row per settled tab: how its settlement ended, written once (unique settlement id).
CREATE TABLE settlements (
    settlement_id text PRIMARY KEY,
    customer text NOT NULL,
    tab_id text NOT NULL,
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    processor text NOT NULL,
    auth_ref text NOT NULL,
    payment_method text NOT NULL DEFAULT '',
    -- Where a processor raised the cap by further holds: [{auth_ref, amount_minor,
    -- capture_before_ms}], settled with one capture per hold (docs/processors.md).
    second_holds jsonb NOT NULL DEFAULT '[]',
    opened_cap_minor bigint NOT NULL DEFAULT 0 CHECK (opened_cap_minor >= 0),
    outcome text NOT NULL CHECK (outcome IN ('captured', 'declined', 'voided', 'expired')),
    state text NOT NULL,
    freeze_reason text NOT NULL DEFAULT '',
    cap_minor bigint NOT NULL CHECK (cap_minor >= 0),
    accrued_minor bigint NOT NULL CHECK (accrued_minor >= 0 AND accrued_minor <= cap_minor),
    captured_minor bigint NOT NULL CHECK (captured_minor >= 0),
    released_minor bigint NOT NULL DEFAULT 0 CHECK (released_minor >= 0),
    platform_minor bigint NOT NULL CHECK (platform_minor >= 0),
    capture_id text UNIQUE,
    processor_ref text NOT NULL DEFAULT '',
    idempotency_key text NOT NULL DEFAULT '',
    attempts integer NOT NULL DEFAULT 0,
    decline_reason text NOT NULL DEFAULT '',
    retryable boolean NOT NULL DEFAULT false,
    tab_version bigint NOT NULL DEFAULT 0,
    opened_at timestamptz,
    active_at timestamptz,
    exhausted_at timestamptz,
    frozen_at timestamptz,
    capture_before timestamptz,
    started_at timestamptz,
    outcome_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer, tab_id),
    -- Conservation: a capture takes exactly the accrued amount, and only a capture has an id.
    CHECK ((outcome = 'captured') = (capture_id IS NOT NULL)),
    CHECK (outcome <> 'captured' OR captured_minor = accrued_minor),
    CHECK (outcome = 'captured' OR captured_minor = 0),
    CHECK (outcome <> 'voided' OR accrued_minor = 0)
);

CREATE INDEX settlements_outcome_at ON settlements (outcome_at);
CREATE INDEX settlements_customer ON settlements (customer, outcome_at);
CREATE INDEX settlements_unpaid ON settlements (outcome) WHERE outcome IN ('declined', 'expired');

-- The itemized lines of a settled tab, as the meter wrote them.
CREATE TABLE settlement_lines (
    settlement_id text NOT NULL REFERENCES settlements (settlement_id),
    line_id text NOT NULL,
    seq integer NOT NULL CHECK (seq >= 0),
    kind text NOT NULL CHECK (kind IN ('tip', 'session')),
    room text NOT NULL,
    at timestamptz NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    payout_bp integer NOT NULL CHECK (payout_bp BETWEEN 0 AND 10000),
    share_minor bigint NOT NULL CHECK (share_minor >= 0 AND share_minor <= amount_minor),
    seconds integer NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    rate_per_minute_minor bigint NOT NULL DEFAULT 0 CHECK (rate_per_minute_minor >= 0),
    PRIMARY KEY (settlement_id, line_id)
);

-- Each show a settled tab paid for: its billed seconds and how it ended.
CREATE TABLE settlement_sessions (
    settlement_id text NOT NULL REFERENCES settlements (settlement_id),
    session_id text NOT NULL,
    room text NOT NULL,
    kind text NOT NULL,
    rate_per_minute_minor bigint NOT NULL CHECK (rate_per_minute_minor >= 0),
    minimum_s integer NOT NULL DEFAULT 0 CHECK (minimum_s >= 0),
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    billed_s integer NOT NULL CHECK (billed_s >= 0),
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    end_reason text NOT NULL DEFAULT '',
    PRIMARY KEY (settlement_id, session_id)
);

-- Each model room's part of a settled tab: what the tab paid the room and the model's share.
CREATE TABLE model_earnings (
    settlement_id text NOT NULL REFERENCES settlements (settlement_id),
    room text NOT NULL,
    currency char(3) NOT NULL,
    gross_minor bigint NOT NULL CHECK (gross_minor > 0),
    share_minor bigint NOT NULL CHECK (share_minor >= 0 AND share_minor <= gross_minor),
    collected boolean NOT NULL,
    outcome_at timestamptz NOT NULL,
    PRIMARY KEY (settlement_id, room)
);

CREATE INDEX model_earnings_room ON model_earnings (room, currency);

-- Conservation held by the database: a settlement's lines add up to its accrued amount, and
-- the models' shares plus the platform's share add up to the same.
CREATE FUNCTION check_settlement_conserved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s settlements%ROWTYPE;
    lines_total bigint;
    shares_total bigint;
    gross_total bigint;
BEGIN
    SELECT * INTO s FROM settlements WHERE settlement_id = NEW.settlement_id;
    SELECT coalesce(sum(amount_minor), 0), coalesce(sum(share_minor), 0)
        INTO lines_total, shares_total
        FROM settlement_lines WHERE settlement_id = NEW.settlement_id;
    SELECT coalesce(sum(gross_minor), 0) INTO gross_total
        FROM model_earnings WHERE settlement_id = NEW.settlement_id;
    IF lines_total <> s.accrued_minor THEN
        RAISE EXCEPTION 'settlement %: lines sum to %, accrued is %',
            s.settlement_id, lines_total, s.accrued_minor USING ERRCODE = 'check_violation';
    END IF;
    IF shares_total + s.platform_minor <> s.accrued_minor THEN
        RAISE EXCEPTION 'settlement %: shares % + platform % <> accrued %',
            s.settlement_id, shares_total, s.platform_minor, s.accrued_minor
            USING ERRCODE = 'check_violation';
    END IF;
    IF gross_total <> s.accrued_minor THEN
        RAISE EXCEPTION 'settlement %: model earnings gross % <> accrued %',
            s.settlement_id, gross_total, s.accrued_minor USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER settlement_conserved
    AFTER INSERT ON settlements DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_settlement_conserved();

CREATE TRIGGER settlements_append_only BEFORE DELETE ON settlements
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER settlement_lines_append_only BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER model_earnings_append_only BEFORE DELETE ON model_earnings
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Every webhook event delivered to the cam site (the Redis queue keeps only those waiting).
CREATE TABLE webhook_deliveries (
    event_id text PRIMARY KEY,
    event_type text NOT NULL,
    subject_id text NOT NULL,
    attempts integer NOT NULL CHECK (attempts >= 1),
    delivered_at timestamptz NOT NULL
);

CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject_id);
