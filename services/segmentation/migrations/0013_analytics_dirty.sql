-- The contacts whose analytics features must follow what an RFM computation
-- or a lifetime-value fit stored: written in the transaction that replaces
-- the scores or values, one row for each contact whose stored scores, group
-- or predicted value changed (or went); removed by the refresh in the
-- transaction that brings the contact's document up to date. A refresh so
-- reads the documents that change, not the whole base (at a million
-- contacts it read every document to patch a fifth of them), and one a
-- crash interrupted is finished by the leader.
CREATE TABLE analytics_dirty (
    contact_id uuid PRIMARY KEY
);

-- A refresh still pending under the counters this replaces covers every
-- document. (A replica of the build before, still running during a rolling
-- upgrade, fails a computation's save until it is replaced: the schedule's
-- next look, on a new replica, computes it again.)
INSERT INTO analytics_dirty
SELECT contact_id FROM features WHERE EXISTS (SELECT FROM analytics_refresh WHERE requested > done);
DROP TABLE analytics_refresh;
