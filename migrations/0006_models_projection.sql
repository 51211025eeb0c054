CREATE TABLE `models` (
	`name` text PRIMARY KEY NOT NULL,
	`job_id` text NOT NULL,
	`model_type` text NOT NULL,
	`size` integer NOT NULL,
	`sha256` text NOT NULL,
	`stored_in` text NOT NULL,
	`location` text NOT NULL,
	`worker_id` text NOT NULL,
	`metrics` text,
	`fingerprint` text,
	`metadata` text,
	`recorded_seq` integer NOT NULL,
	`created_at` text NOT NULL,
	`deleted_at` text
);
--> statement-breakpoint
CREATE INDEX `models_reuse` ON `models` (`model_type`,`fingerprint`,`recorded_seq`);--> statement-breakpoint
CREATE INDEX `models_seq` ON `models` (`recorded_seq`);