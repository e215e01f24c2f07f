-- A creation's document in a column of its own, the record's JSON as its
-- row stores it: an import copies each new contact's `data` into its audit
-- entry inside PostgreSQL (one statement writes both), instead of sending
-- and parsing the same document twice. A creation's `changes` is then '[]'.
-- Entries written before hold the document as `changes = {"created": …}`;
-- both forms are read, redacted and erased alike.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS created jsonb;
