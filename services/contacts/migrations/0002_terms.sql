-- What a contact is found by (see terms.rs), in two shapes for two uses.
--
-- Blocking keys (normalised email, E.164 phone, phonetic names with postal
-- code or birth date) stay in contact_keys, probed by a plain btree: a
-- duplicate check or a lookup reads a handful, an import message thousands
-- at once. Each contact's keys are also kept in its row (`keys`), so a
-- change deletes exactly those: the per-contact index on contact_keys goes.
--
-- Search terms (name words, pairs of name words, email domains) live in the
-- row (`terms`) behind a GIN index over live contacts. It replaces the
-- trigram GiST index on search_text, whose upkeep cost more than the rest
-- of an imported row. New entries go to a small pending list (256 kB)
-- merged into the index in bulk, which halves their cost (2,000 contacts
-- indexed in 72-89 ms instead of 128-144 ms); a search reads the pending
-- list too: 0.25 ms when full, where PostgreSQL's default of 4 MB would
-- cost milliseconds.
DROP INDEX IF EXISTS contact_keys_by_contact;
ALTER TABLE contacts ADD COLUMN keys text[] NOT NULL DEFAULT '{}';
ALTER TABLE contacts ADD COLUMN terms text[] NOT NULL DEFAULT '{}';
-- The version of terms.rs that computed `keys` and `terms`; older rows are
-- indexed again in the background when the role starts (store/reindex.rs).
ALTER TABLE contacts ADD COLUMN terms_version smallint NOT NULL DEFAULT 0;
CREATE INDEX contacts_terms ON contacts USING gin (terms) WITH (fastupdate = on, gin_pending_list_limit = 256)
    WHERE merged_into IS NULL AND delete_time IS NULL AND erase_time IS NULL;

DROP INDEX IF EXISTS contacts_search;
ALTER TABLE contacts DROP COLUMN IF EXISTS search_text;

-- The name words of live contacts: search widens a query word to the stored
-- words it is a typo of (trigram similarity) or a prefix of (the C-collated
-- primary key), then reads the contacts by their `w:` and `n2:` terms. A few
-- thousand to a few hundred thousand rows, so both walks are short.
CREATE TABLE search_words (
    word text COLLATE "C" PRIMARY KEY
);
CREATE INDEX search_words_similar ON search_words USING gin (word gin_trgm_ops);
