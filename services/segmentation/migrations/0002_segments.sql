-- Segments and their members. A dynamic segment's members are the contacts
-- whose features meet its rule; they are kept as features change, and each
-- entry and exit is an event of this role's feed.
CREATE TABLE segments (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    kind        text        NOT NULL,
    rule        text        NOT NULL DEFAULT '',
    version     bigint      NOT NULL DEFAULT 1,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    delete_time timestamptz
);
CREATE UNIQUE INDEX segments_by_name ON segments (lower(name)) WHERE delete_time IS NULL;

-- Keyed by contact first (a contact's segments; shardable by contact), and
-- by segment for listing members.
CREATE TABLE memberships (
    contact_id uuid        NOT NULL,
    segment_id uuid        NOT NULL,
    since      timestamptz NOT NULL,
    PRIMARY KEY (contact_id, segment_id)
);
CREATE INDEX memberships_by_segment ON memberships (segment_id, contact_id);
