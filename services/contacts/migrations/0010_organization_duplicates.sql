-- Organizations are checked for duplicates at create by their name without
-- its legal form (`matching::organizations::name_key`) and by their web
-- domain. Rows stored before have no key until the role fills it in at
-- start (`store::organizations::fill_name_keys`).
ALTER TABLE organizations ADD COLUMN name_key text;
CREATE INDEX organizations_name_key ON organizations (name_key) WHERE delete_time IS NULL;
CREATE INDEX organizations_domain ON organizations ((data->>'domain')) WHERE delete_time IS NULL;
