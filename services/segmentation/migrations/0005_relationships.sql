-- The relationships features roll up over: who referred whom, and who works
-- for which organization (from the contacts feed's RelationshipChanged).
CREATE TABLE relationships (
    relationship_id uuid PRIMARY KEY,
    contact_id      uuid NOT NULL,
    -- referred_by (target: the contact who referred) or employee_of (target: the organization)
    kind            text NOT NULL,
    target_id       uuid NOT NULL
);
CREATE INDEX relationships_by_contact ON relationships (contact_id);
CREATE INDEX relationships_by_target ON relationships (target_id, kind);
