-- 0008_collection_outbox.sql — the transactional outbox of the merchant's collection.*
-- webhooks.
--
-- A case change and the webhook that tells the merchant about it are written in one
-- transaction: a process that dies after the commit leaves the row here, unrelayed, and the
-- relay (every settlement worker's loop, and the API right after its commit) queues it later.
-- The event id is unique, so a change recorded once is one row; the webhook queue refuses an
-- event id it holds or delivered, so a row relayed twice (a crash between queueing and
-- marking it relayed) is still one webhook, and receivers dedupe by the id in any case.

CREATE TABLE collection_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 200),
    event_type text NOT NULL CHECK (event_type LIKE 'collection.%'),
    subject_id text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    relayed_at timestamptz
);

-- The relay reads the unrelayed rows in order; relayed rows are pruned after a while.
CREATE INDEX collection_outbox_unrelayed ON collection_outbox (seq) WHERE relayed_at IS NULL;
CREATE INDEX collection_outbox_relayed ON collection_outbox (relayed_at)
    WHERE relayed_at IS NOT NULL;
