-- RFM scores of every customer of the last computation, replaced whole by
-- each; the computation's parameters beside them.
CREATE TABLE rfm_runs (
    singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    computed_at   timestamptz NOT NULL,
    currency      text        NOT NULL,
    window_days   integer     NOT NULL,
    customers     bigint      NOT NULL,
    computed_by   text        NOT NULL
);

CREATE TABLE rfm_scores (
    contact_id      uuid    PRIMARY KEY,
    recency_days    bigint  NOT NULL,
    frequency       bigint  NOT NULL,
    monetary        bigint  NOT NULL,
    recency_score   integer NOT NULL,
    frequency_score integer NOT NULL,
    monetary_score  integer NOT NULL,
    rfm_group       text    NOT NULL
);
