CREATE TABLE `job_counts` (
	`status` text NOT NULL,
	`model_type` text NOT NULL,
	`n` integer NOT NULL,
	PRIMARY KEY(`status`, `model_type`)
);
--> statement-breakpoint
-- Hand-written below: triggers keep job_counts equal to
-- SELECT status, model_type, count(*) FROM jobs GROUP BY 1, 2
-- inside whatever transaction writes jobs. Rows at 0 are kept (a dozen at most), so the
-- triggers never delete and a count never depends on a row's absence.
INSERT INTO `job_counts` (`status`, `model_type`, `n`)
SELECT `status`, `model_type`, count(*) FROM `jobs` GROUP BY `status`, `model_type`;
--> statement-breakpoint
CREATE TRIGGER `job_counts_insert` AFTER INSERT ON `jobs`
BEGIN
  INSERT INTO `job_counts` (`status`, `model_type`, `n`) VALUES (NEW.`status`, NEW.`model_type`, 1)
  ON CONFLICT (`status`, `model_type`) DO UPDATE SET `n` = `n` + 1;
END;
--> statement-breakpoint
CREATE TRIGGER `job_counts_delete` AFTER DELETE ON `jobs`
BEGIN
  UPDATE `job_counts` SET `n` = `n` - 1
  WHERE `status` = OLD.`status` AND `model_type` = OLD.`model_type`;
END;
--> statement-breakpoint
-- Most upserts change neither column (log lines, progress): WHEN skips them.
CREATE TRIGGER `job_counts_update` AFTER UPDATE OF `status`, `model_type` ON `jobs`
WHEN OLD.`status` IS NOT NEW.`status` OR OLD.`model_type` IS NOT NEW.`model_type`
BEGIN
  UPDATE `job_counts` SET `n` = `n` - 1
  WHERE `status` = OLD.`status` AND `model_type` = OLD.`model_type`;
  INSERT INTO `job_counts` (`status`, `model_type`, `n`) VALUES (NEW.`status`, NEW.`model_type`, 1)
  ON CONFLICT (`status`, `model_type`) DO UPDATE SET `n` = `n` + 1;
END;
