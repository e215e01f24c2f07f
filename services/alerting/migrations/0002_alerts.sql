-- Alerts: one row per firing of a condition, identified by its labels'
-- fingerprint; at most one firing row per fingerprint.
CREATE TABLE alerts (
    id                uuid        PRIMARY KEY,
    fingerprint       text        NOT NULL,
    labels            jsonb       NOT NULL,
    annotations       jsonb       NOT NULL,
    source            text        NOT NULL,
    source_id         uuid        NOT NULL,
    state             text        NOT NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    resolved_by       text        NOT NULL DEFAULT '',
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    acknowledge_note  text        NOT NULL DEFAULT '',
    update_time       timestamptz NOT NULL
);
CREATE UNIQUE INDEX alerts_firing ON alerts (fingerprint) WHERE state = 'firing';
CREATE INDEX alerts_by_source ON alerts (source_id, state);
CREATE INDEX alerts_newest ON alerts (starts_at DESC, id DESC);
-- Resolved alerts still sent to Alertmanager (with their end) for a while.
CREATE INDEX alerts_resolved ON alerts (ends_at) WHERE state = 'resolved';
CREATE INDEX alerts_changed ON alerts (update_time);
