-- The transactional outbox of one role. Runs inside the role's own schema
-- (search_path), so every role gets its own `outbox`.
--
-- Feed order is (transaction_id, sequence): a reader only takes rows whose
-- transaction is older than every transaction still running
-- (pg_snapshot_xmin), so no row can later appear before its cursor.
CREATE TABLE IF NOT EXISTS outbox (
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    sequence       bigint      GENERATED ALWAYS AS IDENTITY,
    id             uuid        NOT NULL,
    event_type     text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    payload        bytea       NOT NULL,
    request_id     text        NOT NULL DEFAULT '',
    PRIMARY KEY (transaction_id, sequence)
);

CREATE INDEX IF NOT EXISTS outbox_by_aggregate ON outbox (aggregate_id, transaction_id, sequence);

-- Wakes subscribers at commit: NOTIFY is delivered only when the writing
-- transaction commits, once per statement, on a channel named for the schema.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crm_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Where each consumer of another role's feed has got to; a consumer updates
-- its row in the same transaction as the effects of the events it handled.
CREATE TABLE IF NOT EXISTS feed_cursors (
    consumer       text        PRIMARY KEY,
    transaction_id bigint      NOT NULL,
    sequence       bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
