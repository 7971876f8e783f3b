-- 0006_console.sql — the operator console: operator accounts, their sessions, the audit log of
-- every console action, and the indexes its analyses read through.
--
-- An operator's password is stored only as an argon2id hash (the hash carries its own salt and
-- cost). A session row is what the signed cookie names: the cookie alone is not enough, so a
-- logout or a disabled operator ends the session at once. The audit log is append-only, like
-- the journal: who did what, when, from where, and how it ended.

CREATE TABLE operators (
    operator_id text PRIMARY KEY CHECK (operator_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    role text NOT NULL CHECK (role IN ('read_only', 'support', 'admin')),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    -- Failed logins since the last success; at the console's bound the account locks until
    -- locked_until (a success resets the count).
    failed_n integer NOT NULL DEFAULT 0 CHECK (failed_n >= 0),
    locked_until timestamptz,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    last_login_at timestamptz
);

CREATE TABLE console_sessions (
    session_id text PRIMARY KEY CHECK (length(session_id) BETWEEN 32 AND 128),
    operator_id text NOT NULL REFERENCES operators (operator_id),
    -- The token every state-changing request must echo in a header (a cross-site form can set
    -- neither the header nor, with SameSite=Strict, the cookie).
    csrf_token text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
    remote_addr text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    CHECK (expires_at > created_at)
);

CREATE INDEX console_sessions_operator ON console_sessions (operator_id);

CREATE TABLE console_audit (
    audit_no bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The operator, or the name tried at a failed login ('' when none was given).
    operator_id text NOT NULL,
    action text NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    target text NOT NULL DEFAULT '',
    outcome text NOT NULL CHECK (length(outcome) BETWEEN 1 AND 64),
    detail jsonb NOT NULL DEFAULT '{}',
    remote_addr text NOT NULL DEFAULT '',
    at timestamptz NOT NULL
);

CREATE INDEX console_audit_at ON console_audit (at);
CREATE INDEX console_audit_operator ON console_audit (operator_id, at);

CREATE TRIGGER console_audit_append_only BEFORE UPDATE OR DELETE ON console_audit
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Revenue by day, per currency and kind, of captured settlements: the aggregate the revenue and
-- dispute-ratio analyses read for closed days (a day is closed a few days after it ended: a
-- settlement is written to the ledger minutes after its outcome, never days). Filled by the
-- console on first read of a closed day, from the ledger; a day is rolled up once
-- (console_revenue_days_done), and rolling it twice changes nothing (ON CONFLICT DO NOTHING:
-- a closed day's captured settlements never change). metric 'revenue' has one row per kind
-- (tip, private, spy, cam2cam); metric 'captured' one row (kind '') counting the settlements.
CREATE TABLE console_revenue_days (
    day date NOT NULL,
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    metric text NOT NULL CHECK (metric IN ('revenue', 'captured')),
    kind text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    items_n bigint NOT NULL CHECK (items_n >= 0),
    PRIMARY KEY (day, currency, metric, kind)
);

CREATE TABLE console_revenue_days_done (
    day date PRIMARY KEY,
    rolled_at timestamptz NOT NULL
);

-- The analyses read windows of time; each table they read is indexed by the time they bucket
-- by (settlements.outcome_at, disputes.opened_at and journal_entries.posted_at already are).
CREATE INDEX settlements_captured_at ON settlements (outcome_at, currency)
    WHERE outcome = 'captured';
CREATE INDEX model_earnings_outcome_at ON model_earnings (outcome_at, currency);
CREATE INDEX refunds_requested_at ON refunds (requested_at, currency);
CREATE INDEX disputes_opened ON disputes (opened_at, currency);
CREATE INDEX collection_cases_opened_at ON collection_cases (opened_at, currency);
