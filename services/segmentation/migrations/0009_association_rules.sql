-- Association rules over co-purchases (the next best offers), replaced
-- whole by each computation; the computation's parameters beside them.
CREATE TABLE association_runs (
    singleton      boolean          PRIMARY KEY DEFAULT true CHECK (singleton),
    computed_at    timestamptz      NOT NULL,
    window_days    integer          NOT NULL,
    min_support    double precision NOT NULL,
    min_confidence double precision NOT NULL,
    baskets        bigint           NOT NULL,
    computed_by    text             NOT NULL
);

CREATE TABLE association_rules (
    antecedent         text             NOT NULL,
    consequent         text             NOT NULL,
    antecedent_baskets bigint           NOT NULL,
    both_baskets       bigint           NOT NULL,
    support            double precision NOT NULL,
    confidence         double precision NOT NULL,
    lift               double precision NOT NULL,
    PRIMARY KEY (antecedent, consequent)
);
