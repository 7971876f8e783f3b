-- 0012_subscription_pause.sql — memberships can be paused and resumed; the console reads
-- recurring revenue, churn and trial conversion through indexes, and memberships join the
-- revenue aggregate.
--
-- A pause is asked for (pause_at: the end of the paid period, when it takes effect) and then
-- taken (state 'paused': no charge, no features). A resume begins the next period on the day of
-- the resume: the periods from schedule_from_period on are counted from schedule_from instead
-- of from anchor_at (docs/subscriptions.md, "Pause and resume").

ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_state_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_state_check CHECK (state IN
    ('trialing', 'active', 'past_due', 'restricted', 'paused', 'cancelled', 'expired'));
ALTER TABLE subscriptions ADD COLUMN pause_at timestamptz;
ALTER TABLE subscriptions ADD COLUMN paused_at timestamptz;
ALTER TABLE subscriptions ADD COLUMN schedule_from timestamptz;
ALTER TABLE subscriptions ADD COLUMN schedule_from_period integer NOT NULL DEFAULT 1
    CHECK (schedule_from_period >= 1);
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_paused_at
    CHECK ((state = 'paused') = (paused_at IS NOT NULL));

-- The console's analyses (server/console/queries.py): live subscriptions at an instant (their
-- starts and ends), trials by the day they ended, paid periods by their bounds and by the day
-- they were paid.
CREATE INDEX subscriptions_started ON subscriptions (started_at);
CREATE INDEX subscriptions_ended ON subscriptions (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX subscriptions_trial_ended
    ON subscriptions ((least(anchor_at, coalesce(ended_at, anchor_at))))
    WHERE anchor_at > started_at;
CREATE INDEX subscription_periods_paid_starts ON subscription_periods (starts_at)
    WHERE status = 'paid';
CREATE INDEX subscription_periods_paid_ends ON subscription_periods (ends_at)
    WHERE status = 'paid';
CREATE INDEX subscription_periods_paid_at ON subscription_periods (settled_at)
    WHERE status = 'paid';

-- The revenue aggregate gains the kind 'membership': days rolled up before it are rolled up
-- again on their next read (the aggregate is a cache of the ledger, never the record).
DELETE FROM console_revenue_days;
DELETE FROM console_revenue_days_done;
