-- A contact's feature document is stored as the bytes of its JSON text, not
-- as jsonb: the role only writes and reads it whole (segments run in the
-- role, never in SQL), and jsonb's parse on every write cost two thirds of
-- writing a burst's documents (500 documents of 1.9 KB: 25 ms as jsonb,
-- 8 ms as bytes). Read one by hand with convert_from(doc, 'UTF8')::jsonb.
ALTER TABLE features ALTER COLUMN doc TYPE bytea USING convert_to(doc::text, 'UTF8');
