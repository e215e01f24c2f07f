-- The read model: what the role knows of each contact, built only from the
-- contacts and interactions feeds (it can be dropped and rebuilt from them).
-- Every key starts with the contact id.

-- What the contacts feed says of a contact: the inputs of its contact features.
CREATE TABLE profiles (
    contact_id uuid        PRIMARY KEY,
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per interaction, with only what features read (no free text).
CREATE TABLE activity (
    contact_id     uuid             NOT NULL,
    interaction_id uuid             NOT NULL,
    occurred_at    timestamptz      NOT NULL,
    kind           text             NOT NULL,
    channel        text             NOT NULL,
    currency       text             NOT NULL DEFAULT '',
    amount         bigint           NOT NULL DEFAULT 0,
    sentiment      double precision,
    skus           text[]           NOT NULL DEFAULT '{}',
    PRIMARY KEY (contact_id, interaction_id)
);

-- Merged contacts: an event that names a loser applies to its survivor
-- (the feeds are followed separately, so an interaction of a loser can
-- arrive after the merge). Survivors are flattened: never a chain.
CREATE TABLE redirects (
    loser_id    uuid PRIMARY KEY,
    survivor_id uuid NOT NULL
);
CREATE INDEX redirects_by_survivor ON redirects (survivor_id);

-- Contacts that are no more (erased or deleted): later events about them are dropped.
CREATE TABLE gone (
    contact_id uuid        PRIMARY KEY,
    reason     text        NOT NULL,
    gone_at    timestamptz NOT NULL DEFAULT now()
);

-- The features of each live contact, computed from its profile and activity,
-- and when a value next changes with time alone.
CREATE TABLE features (
    contact_id     uuid        PRIMARY KEY,
    doc            jsonb       NOT NULL,
    computed_at    timestamptz NOT NULL,
    next_change_at timestamptz
);
CREATE INDEX features_by_next_change ON features (next_change_at) WHERE next_change_at IS NOT NULL;
