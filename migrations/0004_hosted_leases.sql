CREATE TABLE `leases` (
	`job_id` text NOT NULL,
	`attempt` integer NOT NULL,
	`worker_id` text NOT NULL,
	`token` text NOT NULL,
	`claim_id` text NOT NULL,
	`claimed_at` text NOT NULL,
	`expires_at` integer NOT NULL,
	`active` integer NOT NULL,
	`output_offset` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`job_id`, `attempt`)
);
--> statement-breakpoint
CREATE INDEX `leases_active_expiry` ON `leases` (`active`,`expires_at`);--> statement-breakpoint
CREATE INDEX `leases_claim` ON `leases` (`claim_id`);--> statement-breakpoint
CREATE TABLE `workers` (
	`worker_id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`model_types` text NOT NULL,
	`max_concurrent` integer NOT NULL,
	`registered_at` text NOT NULL,
	`last_heartbeat` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `workers_name` ON `workers` (`name`);--> statement-breakpoint
ALTER TABLE `jobs` ADD `attempt` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `max_attempts` integer DEFAULT 1 NOT NULL;