-- A merge now re-keys interaction_locations through the moved interactions'
-- ids (primary key), so the per-contact index on it is not needed; dropping
-- it saves an index insert per ingested interaction.
DROP INDEX IF EXISTS interaction_locations_by_contact;
