-- The live lane: events written by a single call (a person or an app waiting
-- on it) are read apart from those of bulk streams (an import, an ingest),
-- so that a follower can apply them ahead of a bulk backlog.
--
-- `bulk` marks the events of bulk streams: those written by a transaction
-- that called `outbox::mark_bulk` (which sets `crm.outbox_bulk` for the
-- transaction). The partial index holds the others only, so a bulk load
-- writes nothing more than before and a read of the lane never walks its
-- rows. Rows written before this migration are in the lane.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS bulk boolean NOT NULL
    DEFAULT coalesce(current_setting('crm.outbox_bulk', true) = 'on', false);

CREATE INDEX IF NOT EXISTS outbox_live ON outbox (transaction_id, sequence) WHERE NOT bulk;

-- Events of the live lane a consumer has taken to apply, by it ahead of
-- their turn or in their turn: whoever inserts the row first applies the
-- event, the other skips it (a second insert waits for the first
-- transaction and then conflicts). Rows at or before the consumer's cursor
-- are deleted as the cursor passes them.
CREATE TABLE IF NOT EXISTS feed_claims (
    consumer       text   NOT NULL,
    transaction_id bigint NOT NULL,
    sequence       bigint NOT NULL,
    PRIMARY KEY (consumer, transaction_id, sequence)
);
