-- Static segments and snapshots keep their members as given; a snapshot
-- names the segment it froze. Sizes: each segment's member count per day,
-- counted as members enter and leave (the count at the end of the day).
ALTER TABLE segments ADD COLUMN IF NOT EXISTS source_segment_id uuid;

CREATE TABLE segment_sizes (
    segment_id uuid   NOT NULL,
    day        date   NOT NULL,
    members    bigint NOT NULL,
    PRIMARY KEY (segment_id, day)
);
