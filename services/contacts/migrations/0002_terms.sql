-- What a contact is found by (see terms.rs), in one table probed by a
-- btree: its blocking keys (normalised email, E.164 phone, phonetic names
-- with postal code or birth date) and its search terms (name words, pairs of
-- name words, email domains). Lookups and duplicate checks read a handful,
-- an import message thousands at once, a search a few dozen with a limit
-- each: a btree scan stops at its limit, where a GIN scan must first collect
-- every match (300 ms for a common email domain among a million contacts).
--
-- It replaces the trigram GiST index on search_text, whose upkeep cost more
-- than the rest of an imported row. Each contact's terms are also kept in
-- its row (`terms`), so a change deletes exactly those: the per-contact
-- index on the table goes.
ALTER TABLE contact_keys RENAME TO contact_terms;
ALTER TABLE contact_terms RENAME COLUMN key TO term;
ALTER INDEX contact_keys_pkey RENAME TO contact_terms_pkey;
DROP INDEX IF EXISTS contact_keys_by_contact;
ALTER TABLE contacts ADD COLUMN terms text[] NOT NULL DEFAULT '{}';
-- The version of terms.rs that computed `terms`; older rows are indexed
-- again in the background when the role starts (store/reindex.rs).
ALTER TABLE contacts ADD COLUMN terms_version smallint NOT NULL DEFAULT 0;

DROP INDEX IF EXISTS contacts_search;
ALTER TABLE contacts DROP COLUMN IF EXISTS search_text;

-- The name words of live contacts: search widens a query word to the stored
-- words it is a typo of (trigram similarity) or a prefix of (the C-collated
-- primary key), then reads the contacts by their `w:` and `n2:` terms. A few
-- thousand to a few hundred thousand rows, so both walks are short. New
-- words are rare once a base is loaded, and every search reads the trigram
-- index: no pending list (with PostgreSQL's default of 4 MB, a search took
-- 30 ms more while new names kept arriving).
CREATE TABLE search_words (
    word text COLLATE "C" PRIMARY KEY
);
CREATE INDEX search_words_similar ON search_words USING gin (word gin_trgm_ops) WITH (fastupdate = off);
