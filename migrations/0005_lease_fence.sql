-- The fence of hosted mode, checked inside each report's own transaction: a worker's
-- report inserts (job_id, attempt, token) here, and the insert aborts the whole batch unless
-- that lease is still the job's live one. A lease ended by the reaper (or another
-- instance) between the report's read and its commit therefore takes the report down with
-- it, instead of letting a stale worker's event in.
CREATE VIEW `lease_fence` AS SELECT NULL AS `job_id`, NULL AS `attempt`, NULL AS `token`;
--> statement-breakpoint
CREATE TRIGGER `lease_fence_check` INSTEAD OF INSERT ON `lease_fence`
WHEN NOT EXISTS (
  SELECT 1 FROM `leases` WHERE `job_id` = NEW.`job_id` AND `attempt` = NEW.`attempt`
    AND `token` = NEW.`token` AND `active` = 1
)
BEGIN
  SELECT RAISE(ABORT, 'lease lost: the report''s lease is not the job''s live lease');
END;
