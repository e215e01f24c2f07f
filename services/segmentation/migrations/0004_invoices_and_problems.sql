-- What the interactions feed says of invoices (issued, overdue, settled)
-- and of recurring problems, as features need it.
CREATE TABLE invoices (
    contact_id uuid    NOT NULL,
    invoice_id uuid    NOT NULL,
    currency   text    NOT NULL DEFAULT '',
    amount     bigint  NOT NULL DEFAULT 0,
    due_date   date,
    -- open, overdue or paid
    status     text    NOT NULL,
    paid_late  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (contact_id, invoice_id)
);

CREATE TABLE problems (
    contact_id  uuid        NOT NULL,
    detected_at timestamptz NOT NULL,
    problem     text        NOT NULL,
    PRIMARY KEY (contact_id, detected_at, problem)
);
