-- How many live contacts the base held when a model was fitted: the role
-- fits again on its own when the base has grown by half since
-- (`store::matcher::fit_if_due`).
ALTER TABLE matcher_models ADD COLUMN live_contacts bigint NOT NULL DEFAULT 0;

-- How common each given and family name is among the contacts sampled
-- (`matching::model::NameFrequencies`), for term-frequency adjustment;
-- null for models stored before.
ALTER TABLE matcher_models ADD COLUMN names jsonb;
