-- Whether receivers heard an alert fire: false while a silence held it
-- back at the time (the evaluator announces it when the silence ends; its
-- resolution is announced only if its firing was).
ALTER TABLE alerts ADD COLUMN notified boolean NOT NULL DEFAULT true;
CREATE INDEX alerts_unannounced ON alerts (id) WHERE state = 'firing' AND NOT notified;

-- Silences: alerts matching every matcher reach no receiver between start and end.
CREATE TABLE silences (
    id          uuid        PRIMARY KEY,
    matchers    jsonb       NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    comment     text        NOT NULL,
    created_by  text        NOT NULL,
    update_time timestamptz NOT NULL
);
CREATE INDEX silences_ending ON silences (ends_at);

-- Webhooks and their delivery log.
CREATE TABLE webhooks (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    url         text        NOT NULL,
    matchers    jsonb       NOT NULL,
    secret      text        NOT NULL,
    created_by  text        NOT NULL,
    create_time timestamptz NOT NULL
);

-- One notification of one alert change to one webhook; `attempts` holds
-- each try (time, status, latency, error). A delivery's webhook may be
-- deleted: its log stays.
CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY,
    webhook_id      uuid        NOT NULL,
    alert_id        uuid        NOT NULL REFERENCES alerts (id),
    status          text        NOT NULL,
    state           text        NOT NULL,
    attempts        jsonb       NOT NULL DEFAULT '[]',
    -- attempts before this index came before a retry by hand and do not count against the limit
    counted_from    integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    create_time     timestamptz NOT NULL,
    UNIQUE (webhook_id, alert_id, status)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id DESC);
