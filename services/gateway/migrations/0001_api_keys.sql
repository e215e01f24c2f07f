-- API keys. The secret is never stored: only its SHA-256 (secrets are 256
-- random bits, so a fast hash is enough; a slow one would only slow the gateway).
CREATE TABLE api_keys (
    id            uuid        PRIMARY KEY,
    display_name  text        NOT NULL,
    roles         text[]      NOT NULL,
    secret_sha256 bytea       NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    creator       text        NOT NULL,
    revoke_time   timestamptz,
    revoker       text
);
