-- 0013_allowances.sql — membership allowances that reach the meter (docs/subscriptions.md,
-- "Allowances"): free seconds of a show kind per period, reserved into one tab at a time.
--
-- A reservation is the part of a member's free seconds (of one kind, in one period of one
-- subscription) that one tab may spend: it is inserted, under the subscription row's lock,
-- before the tab's Redis reserve is filled, so two tabs of a member never hold the same
-- seconds. The settlement of the tab records, in its own ledger transaction, how many of them
-- its lines used (settlement_id and used_s, set once); the rest returns to the member. A
-- reservation whose tab never settles stops counting after expires_at (the tab's hold expiry:
-- a tab is always settled before it).
--
-- Settled lines say what an allowance covered: covered_s (a session's free seconds, delivered
-- and charged 0) and saved_minor (the list price less the amount charged); a line may now be
-- of 0 when an allowance covered all of it.

CREATE TABLE allowance_reservations (
    subscription_id text NOT NULL REFERENCES subscriptions (subscription_id),
    period_no integer NOT NULL CHECK (period_no >= 0),
    kind text NOT NULL CHECK (kind IN ('private', 'spy', 'cam2cam')),
    customer text NOT NULL,
    tab_id text NOT NULL,
    reserved_s bigint NOT NULL CHECK (reserved_s >= 0),
    used_s bigint CHECK (used_s >= 0 AND used_s <= reserved_s),
    settlement_id text,
    reserved_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    settled_at timestamptz,
    PRIMARY KEY (subscription_id, period_no, kind, tab_id),
    CHECK ((settlement_id IS NULL) = (used_s IS NULL) AND (used_s IS NULL) = (settled_at IS NULL))
);

CREATE INDEX allowance_reservations_tab ON allowance_reservations (customer, tab_id);

ALTER TABLE settlement_lines
    ADD COLUMN covered_s bigint NOT NULL DEFAULT 0 CHECK (covered_s >= 0),
    ADD COLUMN saved_minor bigint NOT NULL DEFAULT 0 CHECK (saved_minor >= 0),
    ADD COLUMN session_kind text NOT NULL DEFAULT '',
    DROP CONSTRAINT settlement_lines_amount_minor_check,
    ADD CONSTRAINT settlement_lines_amount_minor_check
        CHECK (amount_minor > 0 OR (amount_minor = 0 AND (covered_s > 0 OR saved_minor > 0)));
