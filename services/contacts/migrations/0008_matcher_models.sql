-- Fellegi–Sunter models fitted on this install's own contacts
-- (`matching::fit`, `store::matcher`). The newest is the one in use; a new
-- install, with none, uses the built-in parameters.
CREATE TABLE matcher_models (
    version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fitted_at   timestamptz NOT NULL DEFAULT now(),
    -- What it was fitted on: contacts sampled, random and blocked pairs compared, EM rounds.
    contacts    integer NOT NULL,
    random_pairs integer NOT NULL,
    blocked_pairs integer NOT NULL,
    iterations  integer NOT NULL,
    -- The chance that two contacts sharing a blocking key are one person.
    prior       double precision NOT NULL,
    -- {"given_name": [m per level], ...} and the same for u, levels as `matching::compare` orders them.
    m           jsonb NOT NULL,
    u           jsonb NOT NULL
);
