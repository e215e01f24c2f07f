-- A transaction that NOTIFYs holds PostgreSQL's one notification lock
-- (cluster-wide) from just before its commit record until the commit has
-- been flushed to disk: every committing transaction that NOTIFYs waits
-- for the one before it, fsync included. At a thousand recorded
-- interactions a second beside an ingest, the commits queued on that lock
-- (`Lock:object` on `COMMIT`) and the calls waited seconds.
--
-- So a writer may ask for its wake-up after the commit instead
-- (`outbox::wake_after_commit` sets `crm.outbox_wake` for the
-- transaction): the trigger then leaves it out, and the writer sends it
-- from a connection of its own once the commit returned (`outbox::wake`),
-- a NOTIFY whose transaction writes nothing and holds the lock for
-- microseconds. Writers that do not ask keep the trigger's NOTIFY.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('crm.outbox_wake', true), '') <> 'after_commit' THEN
        PERFORM pg_notify('crm_outbox_' || TG_TABLE_SCHEMA, '');
    END IF;
    RETURN NULL;
END;
$$;
