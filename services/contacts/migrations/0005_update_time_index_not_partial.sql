-- `contacts_live_by_update` was partial (WHERE merged_into IS NULL), so the
-- planner could read the whole of it as a bitmap for the `merged_into IS
-- NULL` condition of any query: with the statistics of a small table (a new
-- install during its first import), reading candidates by id turned into a
-- BitmapAnd of the id probes with a scan of every live contact, once per
-- import message, growing with the table. Without the predicate it is only
-- ever used for what it orders: update times (ListContacts' updated_since).
DROP INDEX IF EXISTS contacts_live_by_update;
CREATE INDEX contacts_by_update ON contacts (update_time, id);
