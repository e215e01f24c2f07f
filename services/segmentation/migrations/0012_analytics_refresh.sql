-- The stored features follow each RFM computation and lifetime-value fit
-- by a refresh of their analytics features, in pages after the commit:
-- `requested` counts the computations, `done` the last one a finished
-- refresh answered, so one interrupted by a crash is finished by the
-- leader (features marked due for a full recompute instead: 170 s for a
-- million contacts, then every document recomputed).
CREATE TABLE analytics_refresh (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    requested bigint  NOT NULL DEFAULT 0,
    done      bigint  NOT NULL DEFAULT 0
);
INSERT INTO analytics_refresh DEFAULT VALUES;

-- Customers and revenue per RFM group, counted by the computation that
-- stored the scores (grouping a million scores on each ask took 2.5 s).
CREATE TABLE rfm_group_totals (
    rfm_group text   PRIMARY KEY,
    customers bigint NOT NULL,
    revenue   bigint NOT NULL
);
INSERT INTO rfm_group_totals
SELECT rfm_group, count(*), coalesce(sum(monetary), 0) FROM rfm_scores GROUP BY rfm_group;
