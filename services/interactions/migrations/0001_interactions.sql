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
