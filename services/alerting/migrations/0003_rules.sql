-- Rules on customer events.
CREATE TABLE rules (
    id                    uuid        PRIMARY KEY,
    name                  text        NOT NULL,
    owner                 text        NOT NULL DEFAULT '',
    description           text        NOT NULL DEFAULT '',
    event_types           text[]      NOT NULL,
    condition             text        NOT NULL,
    severity              text        NOT NULL,
    labels                jsonb       NOT NULL,
    annotations           jsonb       NOT NULL,
    resolve_after_seconds bigint,
    created_by            text        NOT NULL,
    create_time           timestamptz NOT NULL DEFAULT now(),
    delete_time           timestamptz
);
CREATE UNIQUE INDEX rules_by_name ON rules (lower(name)) WHERE delete_time IS NULL;
-- Alerts that resolve by themselves (a rule's resolve_after), by when.
ALTER TABLE alerts ADD COLUMN expires_at timestamptz;
CREATE INDEX alerts_expiring ON alerts (expires_at) WHERE state = 'firing' AND expires_at IS NOT NULL;
