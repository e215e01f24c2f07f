-- A merged organization keeps its row as a redirect to its survivor
-- (`store::organizations::merge_organizations`), as a merged contact does:
-- its id still reads, and links to, the survivor. Merged rows leave the
-- duplicate check, the scan and the lists.
ALTER TABLE organizations ADD COLUMN merged_into uuid REFERENCES organizations (id);
CREATE INDEX organizations_merged_into ON organizations (merged_into) WHERE merged_into IS NOT NULL;
