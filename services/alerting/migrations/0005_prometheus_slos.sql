-- SLOs whose indicator Prometheus counts: the PromQL of the good and of
-- all events over `{{.window}}` (NULL for a business indicator, whose
-- CEL conditions are valid_rule and good_rule, then empty).
ALTER TABLE slos ADD COLUMN good_query text, ADD COLUMN total_query text;
