-- 0004_subscriptions.sql — memberships and recurring billing: plans and their prices,
-- subscriptions, their billing periods and every charge attempt of a period, plan changes
-- (prorations), the history, and invoices numbered from a gap-free counter per series.
--
-- The rules the database can hold are held here: one period row per (subscription, period
-- number); one attempt per (subscription, period, attempt number), its processor idempotency
-- key UNIQUE; at most one attempt in flight and at most one approved attempt per period
-- (partial unique indexes), so a period is charged at most once whatever workers race; one
-- live subscription per customer and plan; one invoice per charged period; invoice numbers
-- UNIQUE per series (gap-free: taken from a counter row in the invoice's own transaction); an
-- invoice's lines add up to it (deferred trigger) and net + tax = total on every line.

INSERT INTO entry_codes (code, name, meaning) VALUES
    (30, 'subscription_charge', 'a membership period was charged: the processor owes it; the tax, the model''s share and the platform''s part are owed on');

CREATE TABLE subscription_plans (
    plan_id text PRIMARY KEY CHECK (length(plan_id) BETWEEN 1 AND 100 AND position(':' in plan_id) = 0),
    kind text NOT NULL CHECK (kind IN ('site', 'fan_club')),
    room text NOT NULL DEFAULT '',
    model_share_bp integer NOT NULL DEFAULT 0 CHECK (model_share_bp BETWEEN 0 AND 10000),
    rank integer NOT NULL DEFAULT 0,
    -- The whole definition (plans.Plan.to_json), as the API showed it when it was created.
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    CHECK ((kind = 'fan_club') = (room <> '')),
    CHECK (kind = 'fan_club' OR model_share_bp = 0)
);

CREATE TABLE subscriptions (
    subscription_id text PRIMARY KEY CHECK (length(subscription_id) BETWEEN 1 AND 200),
    customer text NOT NULL,
    plan_id text NOT NULL REFERENCES subscription_plans (plan_id),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    processor text NOT NULL,
    payment_method text NOT NULL,
    -- The card's expiry month (YYYY-MM), when the processor's page told it: the notice
    -- before a renewal the card will not reach.
    card_expires text NOT NULL DEFAULT '' CHECK (card_expires = '' OR card_expires ~ '^[0-9]{4}-[0-9]{2}$'),
    card_notice_for integer NOT NULL DEFAULT 0,
    -- The customer's country for tax, and the evidence it was decided from.
    country char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    country_evidence text NOT NULL,
    email text NOT NULL DEFAULT '',
    language text NOT NULL DEFAULT 'en',
    state text NOT NULL CHECK (state IN
        ('trialing', 'active', 'past_due', 'restricted', 'cancelled', 'expired')),
    started_at timestamptz NOT NULL,
    -- The start of period 1 (after the trial): every period is counted from it.
    anchor_at timestamptz NOT NULL,
    -- The newest period begun (0: the trial); its bounds.
    period_no integer NOT NULL CHECK (period_no >= 0),
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL CHECK (period_end > period_start),
    paid_periods integer NOT NULL DEFAULT 0 CHECK (paid_periods >= 0),
    -- Prorations waiting for the next invoice (negative: a credit).
    adjustment_minor bigint NOT NULL DEFAULT 0,
    cancel_at timestamptz,
    cancel_mode text NOT NULL DEFAULT '' CHECK (cancel_mode IN ('', 'now', 'period_end', 'notice', 'dunning')),
    past_due_since timestamptz,
    -- When the scheduler must look at it next (a renewal, a retry, a dunning step, the end);
    -- NULL once terminal.
    next_action_at timestamptz,
    -- A worker's claim: others leave the row alone until then (a dead worker's claim lapses).
    lease_until timestamptz,
    ended_at timestamptz,
    updated_at timestamptz NOT NULL,
    CHECK ((state IN ('cancelled', 'expired')) = (ended_at IS NOT NULL)),
    CHECK ((state IN ('past_due', 'restricted')) = (past_due_since IS NOT NULL))
);

CREATE INDEX subscriptions_due ON subscriptions (next_action_at)
    WHERE next_action_at IS NOT NULL;
CREATE INDEX subscriptions_customer ON subscriptions (customer, started_at);
CREATE UNIQUE INDEX subscriptions_one_live ON subscriptions (customer, plan_id)
    WHERE state NOT IN ('cancelled', 'expired');

-- Each billing period begun: what it costs (its invoice lines, taxed) and how it stands.
CREATE TABLE subscription_periods (
    subscription_id text NOT NULL REFERENCES subscriptions (subscription_id),
    period_no integer NOT NULL CHECK (period_no >= 0),
    plan_id text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL CHECK (ends_at > starts_at),
    currency char(3) NOT NULL,
    net_minor bigint NOT NULL,
    tax_minor bigint NOT NULL,
    total_minor bigint NOT NULL CHECK (total_minor >= 0),
    tax_rate_bp integer NOT NULL CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    -- Adjustments this period's invoice took over (prorations, credits).
    adjustment_minor bigint NOT NULL DEFAULT 0,
    lines jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('due', 'paid', 'free', 'unpaid', 'void')),
    attempts_n integer NOT NULL DEFAULT 0 CHECK (attempts_n >= 0),
    first_declined_at timestamptz,
    capture_id text UNIQUE,
    created_at timestamptz NOT NULL,
    settled_at timestamptz,
    PRIMARY KEY (subscription_id, period_no),
    CHECK (net_minor + tax_minor = total_minor),
    CHECK ((status = 'paid') = (capture_id IS NOT NULL))
);

-- Every charge of a period's amount on the card on file: the first (key sub:<id>:<n>) and
-- each dunning retry (sub:<id>:<n>:<attempt>). An attempt whose answer was lost ('unknown',
-- or 'pending' under a lapsed claim) is run again with the same key: the processor replays it.
CREATE TABLE subscription_attempts (
    subscription_id text NOT NULL,
    period_no integer NOT NULL,
    attempt_no integer NOT NULL CHECK (attempt_no >= 1),
    idempotency_key text NOT NULL UNIQUE,
    payment_method text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'declined', 'unknown')),
    decline_reason text NOT NULL DEFAULT '',
    advice_code text NOT NULL DEFAULT '',
    capture_id text UNIQUE,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (subscription_id, period_no, attempt_no),
    FOREIGN KEY (subscription_id, period_no) REFERENCES subscription_periods (subscription_id, period_no),
    CHECK ((status = 'approved') = (capture_id IS NOT NULL))
);

CREATE UNIQUE INDEX subscription_attempts_one_in_flight
    ON subscription_attempts (subscription_id, period_no) WHERE status IN ('pending', 'unknown');
CREATE UNIQUE INDEX subscription_attempts_one_approved
    ON subscription_attempts (subscription_id, period_no) WHERE status = 'approved';
CREATE INDEX subscription_attempts_card ON subscription_attempts (payment_method, started_at);

-- Plan changes and their proration (credited and charged on the next invoice).
CREATE TABLE subscription_changes (
    subscription_id text NOT NULL REFERENCES subscriptions (subscription_id),
    change_no integer NOT NULL CHECK (change_no >= 1),
    from_plan text NOT NULL,
    to_plan text NOT NULL,
    period_no integer NOT NULL,
    remaining_ms bigint NOT NULL CHECK (remaining_ms >= 0),
    period_ms bigint NOT NULL CHECK (period_ms > 0 AND remaining_ms <= period_ms),
    credit_minor bigint NOT NULL CHECK (credit_minor >= 0),
    charge_minor bigint NOT NULL CHECK (charge_minor >= 0),
    at timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, change_no)
);

-- Each transition a subscription went through, in order.
CREATE TABLE subscription_events (
    subscription_id text NOT NULL REFERENCES subscriptions (subscription_id),
    seq integer NOT NULL CHECK (seq >= 1),
    event text NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    detail text NOT NULL DEFAULT '',
    at timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, seq)
);

-- Messages sent to members (receipts, dunning and card-expiry notices): once each.
CREATE TABLE subscription_notices (
    notice_id text PRIMARY KEY,
    subscription_id text NOT NULL REFERENCES subscriptions (subscription_id),
    kind text NOT NULL,
    status text NOT NULL CHECK (status IN ('sent', 'refused', 'unavailable', 'no_address')),
    at timestamptz NOT NULL
);

CREATE TRIGGER subscription_events_append_only BEFORE UPDATE OR DELETE ON subscription_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER subscription_attempts_no_delete BEFORE DELETE ON subscription_attempts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER subscription_periods_no_delete BEFORE DELETE ON subscription_periods
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Invoices. A series' counter row is locked (UPDATE … RETURNING) in the transaction that
-- writes the invoice, so numbers are handed out in commit order without gaps: a rolled-back
-- transaction gives its number back. A PostgreSQL SEQUENCE would not (it never rolls back).
CREATE TABLE invoice_series (
    series text PRIMARY KEY CHECK (series ~ '^[A-Z0-9-]{1,20}$'),
    next_no bigint NOT NULL DEFAULT 1 CHECK (next_no >= 1)
);

CREATE TABLE invoices (
    invoice_id text PRIMARY KEY,
    series text NOT NULL REFERENCES invoice_series (series),
    number bigint NOT NULL CHECK (number >= 1),
    kind text NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    subscription_id text REFERENCES subscriptions (subscription_id),
    period_no integer,
    customer text NOT NULL,
    country char(2) NOT NULL,
    country_evidence text NOT NULL,
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    net_minor bigint NOT NULL,
    tax_minor bigint NOT NULL,
    total_minor bigint NOT NULL,
    tax_inclusive boolean NOT NULL,
    entry_id text NOT NULL UNIQUE REFERENCES journal_entries (entry_id),
    capture_id text NOT NULL DEFAULT '',
    issued_at timestamptz NOT NULL,
    UNIQUE (series, number),
    UNIQUE (subscription_id, period_no),
    CHECK (net_minor + tax_minor = total_minor)
);

CREATE INDEX invoices_issued_at ON invoices (issued_at);

CREATE TABLE invoice_lines (
    invoice_id text NOT NULL REFERENCES invoices (invoice_id),
    line_no smallint NOT NULL CHECK (line_no >= 1),
    description text NOT NULL,
    net_minor bigint NOT NULL,
    tax_minor bigint NOT NULL,
    total_minor bigint NOT NULL,
    tax_rate_bp integer NOT NULL CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (invoice_id, line_no),
    CHECK (net_minor + tax_minor = total_minor)
);

CREATE FUNCTION check_invoice_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    inv record;
    sums record;
BEGIN
    SELECT * INTO inv FROM invoices WHERE invoice_id = NEW.invoice_id;
    SELECT coalesce(sum(net_minor), 0) AS net, coalesce(sum(tax_minor), 0) AS tax,
           coalesce(sum(total_minor), 0) AS total, count(*) AS n
    INTO sums FROM invoice_lines WHERE invoice_id = NEW.invoice_id;
    IF sums.n = 0 OR sums.net <> inv.net_minor OR sums.tax <> inv.tax_minor
            OR sums.total <> inv.total_minor THEN
        RAISE EXCEPTION 'invoice % lines (% + % = %) do not add up to it (% + % = %)',
            NEW.invoice_id, sums.net, sums.tax, sums.total, inv.net_minor, inv.tax_minor,
            inv.total_minor USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER invoice_lines_add_up
    AFTER INSERT ON invoices DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_invoice_lines();

CREATE TRIGGER invoices_append_only BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER invoice_lines_append_only BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
