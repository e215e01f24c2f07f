-- Score models and every version of each: the version rows are the audit
-- trail (who made which version, when, and which sensitive features it was
-- allowed to read). Scores are computed on demand from the features: none
-- is stored.
CREATE TABLE score_models (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    version     bigint      NOT NULL,
    is_default  boolean     NOT NULL DEFAULT false,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX score_models_by_name ON score_models (lower(name));
CREATE UNIQUE INDEX score_models_one_default ON score_models (is_default) WHERE is_default;

CREATE TABLE score_model_versions (
    model_id    uuid        NOT NULL,
    version     bigint      NOT NULL,
    definition  jsonb       NOT NULL,
    made_by     text        NOT NULL,
    request_id  text        NOT NULL,
    made_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, version)
);
