-- Service-level objectives, and the counts of their indicators per minute
-- (valid and good events by the minute they occurred in), from which every
-- window's burn rate is summed.
CREATE TABLE slos (
    id             uuid             PRIMARY KEY,
    name           text             NOT NULL,
    owner          text             NOT NULL DEFAULT '',
    description    text             NOT NULL DEFAULT '',
    objective      double precision NOT NULL,
    window_seconds bigint           NOT NULL,
    valid_rule     text             NOT NULL,
    good_rule      text             NOT NULL,
    min_events     bigint           NOT NULL,
    create_time    timestamptz      NOT NULL DEFAULT now(),
    delete_time    timestamptz
);
CREATE UNIQUE INDEX slos_by_name ON slos (lower(name)) WHERE delete_time IS NULL;

CREATE TABLE sli_minutes (
    slo_id uuid        NOT NULL,
    minute timestamptz NOT NULL,
    valid  bigint      NOT NULL DEFAULT 0,
    good   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (slo_id, minute)
);
