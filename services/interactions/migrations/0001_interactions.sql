-- The interactions role: every touchpoint on one timeline.
--
-- Partitioned by month on occurred_at; every key and index starts with
-- contact_id (shardable by contact, see ARCHITECTURE.md). Partitions are
-- created ahead by the role (`partitions.rs`) and on demand for old dates.
CREATE TABLE interactions (
    contact_id   uuid        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    id           uuid        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    channel      text        NOT NULL,
    kind         text        NOT NULL,
    direction    text        NOT NULL,
    source       text        NOT NULL DEFAULT '',
    external_id  text        NOT NULL DEFAULT '',
    -- Everything else of the interaction, as JSON (see model.rs).
    data         jsonb       NOT NULL,
    PRIMARY KEY (contact_id, occurred_at, id)
) PARTITION BY RANGE (occurred_at);

-- Interactions before any monthly partition (imports of old history).
CREATE TABLE interactions_history PARTITION OF interactions FOR VALUES FROM (MINVALUE) TO ('2000-01-01');

-- (source, external_id) identifies an event of another system once; the
-- id of the interaction it became, and where it lives.
CREATE TABLE interaction_sources (
    source         text        NOT NULL,
    external_id    text        NOT NULL,
    interaction_id uuid        NOT NULL,
    contact_id     uuid        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    PRIMARY KEY (source, external_id)
);

-- Where an interaction is, by id (GetInteraction without the contact).
CREATE TABLE interaction_locations (
    id          uuid        PRIMARY KEY,
    contact_id  uuid        NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX interaction_locations_by_contact ON interaction_locations (contact_id);

-- Invoices: one row per invoice interaction, its live status, keyed by the
-- contact first. A payment naming (source, number) settles it; the overdue
-- job moves an open invoice past its due date to overdue.
CREATE TABLE invoices (
    contact_id     uuid        NOT NULL,
    source         text        NOT NULL,
    number         text        NOT NULL,
    interaction_id uuid        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    due_date       date        NOT NULL,
    currency       text        NOT NULL,
    amount_minor   bigint      NOT NULL,
    status         text        NOT NULL,
    paid_by        uuid,
    status_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, source, number)
);
CREATE INDEX invoices_open_by_due ON invoices (due_date) WHERE status = 'INVOICE_STATUS_OPEN';
CREATE INDEX invoices_overdue_by_due ON invoices (due_date, contact_id, source, number) WHERE status = 'INVOICE_STATUS_OVERDUE';

-- What the contacts feed told this role about each contact's outbound
-- preferences (consent per channel, weekly cap), for CheckContactFrequency.
CREATE TABLE contact_preferences (
    contact_id    uuid    PRIMARY KEY,
    consents      jsonb   NOT NULL DEFAULT '{}',
    max_per_week  integer NOT NULL DEFAULT 0
);

-- When a recurring problem was last raised for a contact, so it is raised
-- once per window, not on every further occurrence.
CREATE TABLE recurring_problems (
    contact_id       uuid        NOT NULL,
    problem          text        NOT NULL,
    last_detected_at timestamptz NOT NULL,
    PRIMARY KEY (contact_id, problem)
);
