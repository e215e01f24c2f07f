-- An item's (source, external_id) is bound to what the item said: a resend
-- of the same item is a duplicate, the same key with different content is
-- refused (it would otherwise be dropped in silence). The fingerprint is the
-- first 16 bytes of SHA-256 over the item's content without its contact (a
-- merge re-keys that). NULL (rows stored before, and erased contacts' rows)
-- matches any content.
ALTER TABLE interaction_sources ADD COLUMN IF NOT EXISTS fingerprint bytea;
