-- 0011_membership_status.sql — a member's devices are told when a subscription changes, and a
-- past-due membership period can be paid through a collection pay link.
--
-- 1. Every change of what a member sees of a subscription (created, state, plan, period,
--    next charge, cancellation …) sends '<customer> <subscription_id>' on the channel
--    tipmeter_subscriptions, from a trigger: in the very transaction that writes the change
--    (NOTIFY is delivered when it commits, and not at all when it rolls back), whichever code
--    path wrote it. A worker's claim (lease_until, next_action_at) is not a change a member
--    sees, so it sends nothing.
-- 2. A collection case may now be a membership debt (origin 'membership'): the unpaid period
--    of a past-due subscription, one case per period (UNIQUE), with no tab settlement.

CREATE FUNCTION notify_subscription_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tipmeter_subscriptions', NEW.customer || ' ' || NEW.subscription_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER subscriptions_notify_insert AFTER INSERT ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION notify_subscription_changed();

-- Every column but a worker's bookkeeping is something a member sees (the row as JSON, less
-- those columns): so a column added later (a pause, items, add-ons) is covered without a change
-- here, and a claim alone announces nothing.
CREATE TRIGGER subscriptions_notify_update AFTER UPDATE ON subscriptions
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'lease_until' - 'next_action_at' - 'updated_at' - 'card_notice_for')
          IS DISTINCT FROM
          (to_jsonb(NEW) - 'lease_until' - 'next_action_at' - 'updated_at' - 'card_notice_for'))
    EXECUTE FUNCTION notify_subscription_changed();

ALTER TABLE collection_cases DROP CONSTRAINT collection_cases_origin_check;
ALTER TABLE collection_cases ADD CONSTRAINT collection_cases_origin_check
    CHECK (origin IN ('declined', 'expired', 'batch', 'online', 'membership'));
ALTER TABLE collection_cases ADD COLUMN subscription_id text;
ALTER TABLE collection_cases ADD COLUMN period_no integer;
ALTER TABLE collection_cases ADD CONSTRAINT collection_cases_period
    FOREIGN KEY (subscription_id, period_no)
    REFERENCES subscription_periods (subscription_id, period_no);
ALTER TABLE collection_cases ADD CONSTRAINT collection_cases_one_per_period
    UNIQUE (subscription_id, period_no);
ALTER TABLE collection_cases ADD CONSTRAINT collection_cases_membership
    CHECK ((origin = 'membership') = (subscription_id IS NOT NULL AND period_no IS NOT NULL));
