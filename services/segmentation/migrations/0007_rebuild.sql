-- A rebuild of the read model from the feeds: its generation, whether one is
-- under way, and which consumers have caught up with their feed since.
CREATE TABLE rebuild (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  bigint      NOT NULL DEFAULT 0,
    rebuilding  boolean     NOT NULL DEFAULT false,
    started_at  timestamptz,
    finished_at timestamptz,
    caught_up   text[]      NOT NULL DEFAULT '{}'
);
INSERT INTO rebuild DEFAULT VALUES ON CONFLICT DO NOTHING;
