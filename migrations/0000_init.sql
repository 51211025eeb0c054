CREATE TABLE `events` (
	`seq` integer PRIMARY KEY NOT NULL,
	`job_id` text NOT NULL,
	`version` integer NOT NULL,
	`type` text NOT NULL,
	`data` text NOT NULL,
	`at` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `events_stream` ON `events` (`job_id`,`version`);--> statement-breakpoint
CREATE INDEX `events_job_type` ON `events` (`job_id`,`type`,`seq`);--> statement-breakpoint
CREATE TABLE `jobs` (
	`job_id` text PRIMARY KEY NOT NULL,
	`version` integer NOT NULL,
	`submitted_seq` integer NOT NULL,
	`parent_id` text,
	`children` text,
	`model_type` text NOT NULL,
	`status` text NOT NULL,
	`message` text NOT NULL,
	`retrain` integer NOT NULL,
	`use_cv` integer NOT NULL,
	`hyperparameters` text NOT NULL,
	`timeout_seconds` integer NOT NULL,
	`artifact_path` text,
	`idempotency_key` text,
	`request_hash` text,
	`created_at` text NOT NULL,
	`updated_at` text NOT NULL,
	`started_at` text,
	`completed_at` text,
	`cancelled_at` text,
	`model_path` text,
	`error` text,
	`failure_reason` text,
	`exit_code` integer,
	`progress` text,
	`metrics` text NOT NULL,
	`warnings` text NOT NULL,
	`log_lines` integer NOT NULL,
	`process` text
);
--> statement-breakpoint
CREATE INDEX `jobs_status_seq` ON `jobs` (`status`,`submitted_seq`);--> statement-breakpoint
CREATE INDEX `jobs_seq` ON `jobs` (`submitted_seq`);--> statement-breakpoint
CREATE INDEX `jobs_parent` ON `jobs` (`parent_id`);--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_idempotency_key` ON `jobs` (`idempotency_key`);