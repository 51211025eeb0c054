-- REPLACE (`INSERT OR REPLACE`, `REPLACE INTO`) resolves a conflict by deleting the old row, and
-- that delete fires no DELETE trigger unless recursive_triggers is on: it slipped past
-- 0001's triggers and rewrote history. A BEFORE INSERT trigger runs before any conflict
-- resolution, so refusing a colliding row here closes every conflict clause at once.
-- Cost: two indexed lookups per appended row (the rowid, and the events_stream index).
CREATE TRIGGER `events_no_replace_seq` BEFORE INSERT ON `events`
WHEN EXISTS (SELECT 1 FROM `events` WHERE `seq` = NEW.`seq`)
BEGIN
  SELECT RAISE(ABORT, 'events are append-only: an event with this seq already exists');
END;
--> statement-breakpoint
CREATE TRIGGER `events_no_replace_version` BEFORE INSERT ON `events`
WHEN EXISTS (SELECT 1 FROM `events` WHERE `job_id` = NEW.`job_id` AND `version` = NEW.`version`)
BEGIN
  SELECT RAISE(ABORT, 'events are append-only: an event with this job_id and version already exists');
END;
