-- A create's idempotency key belongs to its caller and to the request it
-- first came with: (principal, request_id) is the key, and the fingerprint
-- (SHA-256 of the request's content) tells a retry, answered with the first
-- contact, from a reuse for another request, refused. Keys recorded before
-- had no caller: they stay under '' and no caller matches them any more.
ALTER TABLE create_requests ADD COLUMN IF NOT EXISTS principal text NOT NULL DEFAULT '';
ALTER TABLE create_requests ADD COLUMN IF NOT EXISTS fingerprint bytea;
ALTER TABLE create_requests DROP CONSTRAINT IF EXISTS create_requests_pkey;
ALTER TABLE create_requests ADD CONSTRAINT create_requests_pkey PRIMARY KEY (principal, request_id);
