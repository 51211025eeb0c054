-- Finished jobs whose process is still alive are loaded when the store opens (EventStore.open);
-- with this index that read no longer scans every job. Written by hand: drizzle-kit 0.31 quotes
-- an expression index's column wrongly.
CREATE INDEX `jobs_alive` ON `jobs` (json_extract(`process`, '$.alive'));
