-- The contacts role: contacts, organizations, relationships, the keys that
-- find duplicates, idempotency of creates, and the audit trail.

-- Trigram similarity for typo-tolerant search and duplicate blocking. Trusted
-- since PostgreSQL 13, so a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per contact. `data` holds the validated, normalised fields as JSON
-- (see model.rs); the columns beside it exist to filter, sort and search.
-- A merged contact keeps its row as a redirect (`merged_into`); an erased one
-- keeps a tombstone (`erase_time`, `data` = '{}').
CREATE TABLE contacts (
    id              uuid        PRIMARY KEY,
    data            jsonb       NOT NULL,
    lifecycle_stage text        NOT NULL,
    owner           text        NOT NULL DEFAULT '',
    tags            text[]      NOT NULL DEFAULT '{}',
    search_text     text        NOT NULL DEFAULT '',
    needs_review    boolean     NOT NULL DEFAULT false,
    version         bigint      NOT NULL DEFAULT 1,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    delete_time     timestamptz,
    erase_time      timestamptz,
    merged_into     uuid        REFERENCES contacts (id)
);

CREATE INDEX contacts_live_by_update ON contacts (update_time, id) WHERE merged_into IS NULL;
CREATE INDEX contacts_by_owner ON contacts (owner, id) WHERE merged_into IS NULL;
CREATE INDEX contacts_by_tag ON contacts USING gin (tags);
CREATE INDEX contacts_merged_into ON contacts (merged_into) WHERE merged_into IS NOT NULL;
-- Search and the trigram fallback of duplicate checks: nearest first
-- (word-similarity distance, `<<->`) by a GiST walk that stops at the page
-- size, instead of collecting every row that shares a common trigram.
CREATE INDEX contacts_search ON contacts USING gist (search_text gist_trgm_ops)
    WHERE merged_into IS NULL AND delete_time IS NULL;

-- Blocking keys of live contacts (normalised email, E.164 phone, phonetic
-- name with postal code or birth date): the candidates of a duplicate check
-- are the contacts sharing a key. Also serves LookupContact by email/phone.
-- Derived data, rewritten with the contact in the same transaction: no
-- foreign key (its per-row check would dominate bulk imports).
CREATE TABLE contact_keys (
    key        text NOT NULL,
    contact_id uuid NOT NULL,
    PRIMARY KEY (key, contact_id)
);
CREATE INDEX contact_keys_by_contact ON contact_keys (contact_id);

-- (source, id) in another system belongs to one contact.
CREATE TABLE contact_external_ids (
    source      text NOT NULL,
    external_id text NOT NULL,
    contact_id  uuid NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX contact_external_ids_by_contact ON contact_external_ids (contact_id);

-- A create retried with the same key returns the contact the first call made.
CREATE TABLE create_requests (
    request_id  text        PRIMARY KEY,
    contact_id  uuid        NOT NULL REFERENCES contacts (id),
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organizations (
    id          uuid        PRIMARY KEY,
    data        jsonb       NOT NULL,
    name        text        NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    delete_time timestamptz
);
CREATE INDEX organizations_search ON organizations USING gin (lower(name) gin_trgm_ops) WHERE delete_time IS NULL;

CREATE TABLE organization_external_ids (
    source          text NOT NULL,
    external_id     text NOT NULL,
    organization_id uuid NOT NULL REFERENCES organizations (id),
    PRIMARY KEY (source, external_id)
);

-- A typed link from a contact to an organization or to another contact.
CREATE TABLE relationships (
    id               uuid        PRIMARY KEY,
    contact_id       uuid        NOT NULL REFERENCES contacts (id),
    organization_id  uuid        REFERENCES organizations (id),
    other_contact_id uuid        REFERENCES contacts (id),
    type             text        NOT NULL,
    custom_type      text        NOT NULL DEFAULT '',
    start_date       date,
    end_date         date,
    create_time      timestamptz NOT NULL DEFAULT now(),
    CHECK ((organization_id IS NULL) <> (other_contact_id IS NULL)),
    CHECK (contact_id <> other_contact_id)
);
CREATE INDEX relationships_by_contact ON relationships (contact_id, id);
CREATE INDEX relationships_by_organization ON relationships (organization_id, id) WHERE organization_id IS NOT NULL;
CREATE INDEX relationships_by_other_contact ON relationships (other_contact_id, id) WHERE other_contact_id IS NOT NULL;

-- Who changed what: one row per change, with before/after per field.
CREATE TABLE audit_events (
    id            uuid        PRIMARY KEY,
    resource_type text        NOT NULL,
    resource_id   uuid        NOT NULL,
    action        text        NOT NULL,
    actor         text        NOT NULL,
    request_id    text        NOT NULL,
    time          timestamptz NOT NULL DEFAULT now(),
    changes       jsonb       NOT NULL DEFAULT '[]',
    note          text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_by_resource ON audit_events (resource_id, id);
