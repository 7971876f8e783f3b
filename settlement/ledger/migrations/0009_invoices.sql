-- 0009_invoices.sql — invoices for Post Pay captures, credit notes for refunds, their tax, the
-- customer's country on a tab, receipts sent once; quantities and add-ons on subscriptions.
--
-- A captured tab gets one invoice (series P<year>) written in the transaction that records the
-- settlement, and a refund of it one credit note (series CN<year>) written in the transaction
-- that posts the refund: both are numbered from the gap-free counter rows of invoice_series
-- (0004), refer to what they document (the settlement, the refund, the invoice credited), and
-- carry the tax that their journal entry moves to (or back from) tax_payable.

INSERT INTO entry_codes (code, name, meaning) VALUES
    (4, 'tab_tax', 'the tax in a captured tab''s (tax-inclusive) lines: owed to the tax authority, out of the platform''s part'),
    (14, 'refund_tax', 'the tax in a refunded amount: no longer owed to the tax authority, back to the platform''s part');

-- The customer's country when the tab was opened (for routing and, now, for tax) with the
-- evidence it was decided from, and where a receipt goes. On the hold that opened the tab.
ALTER TABLE holds
    ADD COLUMN country text NOT NULL DEFAULT '' CHECK (country = '' OR country ~ '^[A-Z]{2}$'),
    ADD COLUMN country_evidence text NOT NULL DEFAULT '' CHECK (length(country_evidence) <= 200),
    ADD COLUMN email text NOT NULL DEFAULT '' CHECK (length(email) <= 254),
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (language ~ '^[a-z]{2}$');

ALTER TABLE invoices
    ADD COLUMN settlement_id text REFERENCES settlements (settlement_id),
    ADD COLUMN refund_id text REFERENCES refunds (refund_id),
    ADD COLUMN credits_invoice_id text REFERENCES invoices (invoice_id),
    -- A credit note credits an invoice; an invoice credits nothing.
    ADD CONSTRAINT invoices_credit_refers CHECK ((kind = 'credit_note') = (credits_invoice_id IS NOT NULL)),
    -- A credit note's amounts are negative (or zero), an invoice's positive (or zero).
    ADD CONSTRAINT invoices_sign CHECK (
        (kind = 'invoice' AND total_minor >= 0) OR (kind = 'credit_note' AND total_minor <= 0));

-- One invoice per captured settlement, one credit note per refund.
CREATE UNIQUE INDEX invoices_one_per_settlement ON invoices (settlement_id)
    WHERE kind = 'invoice' AND settlement_id IS NOT NULL;
CREATE UNIQUE INDEX invoices_one_per_refund ON invoices (refund_id) WHERE refund_id IS NOT NULL;
CREATE INDEX invoices_customer ON invoices (customer, issued_at);
CREATE INDEX invoices_credits ON invoices (credits_invoice_id) WHERE credits_invoice_id IS NOT NULL;

-- Which statement line an invoice line is (tip:<room>, session:<room>:<rate>, purchase:<id>),
-- so a credit note's line credits the invoice line it names.
ALTER TABLE invoice_lines ADD COLUMN line_key text NOT NULL DEFAULT '';

-- Receipts of Post Pay invoices and credit notes: a row written with the document (an outbox:
-- a process that dies after the commit leaves it pending), claimed by one sender
-- ('sending'), then marked with how it went. At most once: a claimed row is never sent again.
CREATE TABLE invoice_notices (
    invoice_id text PRIMARY KEY REFERENCES invoices (invoice_id),
    status text NOT NULL DEFAULT 'pending' CHECK (length(status) BETWEEN 1 AND 40),
    created_at timestamptz NOT NULL,
    sent_at timestamptz
);

CREATE INDEX invoice_notices_pending ON invoice_notices (created_at) WHERE status = 'pending';

-- Graduated and volume price tiers count a quantity (seats, members); add-ons are further
-- priced items on a subscription (settlement/subscriptions/plans.py).
ALTER TABLE subscriptions
    ADD COLUMN quantity integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 1000000),
    ADD COLUMN addons jsonb NOT NULL DEFAULT '[]'::jsonb;
