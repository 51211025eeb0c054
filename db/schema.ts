/**
 * Database schema (drizzle-kit generates the migrations in `migrations/` from this file).
 * `events` is the append-only log; `jobs` is its projection, one row per job, equal to a
 * replay of the log (see jobs/state.ts). Triggers in a custom migration make `events`
 * append-only in the database itself.
 */
import {
  index,
  integer,
  primaryKey,
  sqliteTable,
  text,
  uniqueIndex,
} from "drizzle-orm/sqlite-core";
import { sql } from "drizzle-orm";

export const events = sqliteTable("events", {
  seq: integer("seq").primaryKey(),
  job_id: text("job_id").notNull(),
  version: integer("version").notNull(),
  type: text("type").notNull(),
  data: text("data").notNull(),
  at: text("at").notNull(),
  /**
   * A log event's lines joined by "\n" (its `data` then holds only `stream` and `count`);
   * null for every other event and for log events stored before migration 0007, whose
   * `data` holds `lines`. Kept out of the JSON so a log line is never encoded nor parsed.
   */
  log_text: text("log_text"),
}, (t) => [
  uniqueIndex("events_stream").on(t.job_id, t.version),
  index("events_job_type").on(t.job_id, t.type, t.seq),
]);

export const jobs = sqliteTable("jobs", {
  job_id: text("job_id").primaryKey(),
  version: integer("version").notNull(),
  submitted_seq: integer("submitted_seq").notNull(),
  parent_id: text("parent_id"),
  children: text("children", { mode: "json" }).$type<string[] | null>(),
  model_type: text("model_type").notNull(),
  status: text("status").notNull(),
  message: text("message").notNull(),
  retrain: integer("retrain", { mode: "boolean" }).notNull(),
  use_cv: integer("use_cv", { mode: "boolean" }).notNull(),
  hyperparameters: text("hyperparameters", { mode: "json" }).notNull(),
  timeout_seconds: integer("timeout_seconds").notNull(),
  artifact_path: text("artifact_path"),
  idempotency_key: text("idempotency_key"),
  request_hash: text("request_hash"),
  created_at: text("created_at").notNull(),
  updated_at: text("updated_at").notNull(),
  started_at: text("started_at"),
  completed_at: text("completed_at"),
  cancelled_at: text("cancelled_at"),
  model_path: text("model_path"),
  error: text("error"),
  failure_reason: text("failure_reason"),
  exit_code: integer("exit_code"),
  progress: text("progress", { mode: "json" }),
  metrics: text("metrics", { mode: "json" }).notNull(),
  warnings: text("warnings", { mode: "json" }).notNull(),
  log_lines: integer("log_lines").notNull(),
  process: text("process", { mode: "json" }),
  attempt: integer("attempt").notNull().default(0),
  max_attempts: integer("max_attempts").notNull().default(1),
}, (t) => [
  index("jobs_status_seq").on(t.status, t.submitted_seq),
  index("jobs_seq").on(t.submitted_seq),
  index("jobs_parent").on(t.parent_id),
  uniqueIndex("jobs_idempotency_key").on(t.idempotency_key),
  // Finished jobs whose process is still alive, for the store's start (EventStore.open): without
  // it the start scanned the whole table, 37 s on a cold 1,000,000-job file.
  index("jobs_alive").on(sql`json_extract(${t.process}, '$.alive')`),
]);

/**
 * How many `jobs` rows have each (status, model_type): the list's `total_count` and
 * `filtered_count` read these few rows instead of counting the table. Triggers on `jobs`
 * (migration 0003) keep it equal to a GROUP BY in the same transaction as every write of the
 * projection, whoever writes it (the event store, a rebuild, the benchmark's generator).
 */
export const jobCounts = sqliteTable("job_counts", {
  status: text("status").notNull(),
  model_type: text("model_type").notNull(),
  n: integer("n").notNull(),
}, (t) => [primaryKey({ columns: [t.status, t.model_type] })]);

/**
 * Leases of claimed jobs (hosted mode): operational state next to the projection, not derived
 * from the log. One row per attempt; `active` while a worker holds it. The claim is a single
 * INSERT … SELECT (queue/claim.ts), and the primary key makes an attempt claimable once.
 */
export const leases = sqliteTable("leases", {
  job_id: text("job_id").notNull(),
  attempt: integer("attempt").notNull(),
  worker_id: text("worker_id").notNull(),
  token: text("token").notNull(),
  claim_id: text("claim_id").notNull(),
  claimed_at: text("claimed_at").notNull(),
  /** Milliseconds since the epoch: compared in SQL on every claim and reap. */
  expires_at: integer("expires_at").notNull(),
  /** 1 while held; 0 once ended by the worker's final report; -1 once ended by the reaper. */
  active: integer("active").notNull(),
  /** Output events of this attempt stored so far: the next chunk's expected offset. */
  output_offset: integer("output_offset").notNull().default(0),
}, (t) => [
  primaryKey({ columns: [t.job_id, t.attempt] }),
  index("leases_active_expiry").on(t.active, t.expires_at),
  index("leases_claim").on(t.claim_id),
]);

/** Remote workers that registered, with their last heartbeat (GET /health lists them). */
export const workers = sqliteTable("workers", {
  worker_id: text("worker_id").primaryKey(),
  name: text("name").notNull(),
  model_types: text("model_types", { mode: "json" }).$type<string[]>().notNull(),
  max_concurrent: integer("max_concurrent").notNull(),
  registered_at: text("registered_at").notNull(),
  last_heartbeat: text("last_heartbeat").notNull(),
  /** When it said it was stopping (a graceful stop): not live from then on, whatever its heartbeat. */
  stopped_at: text("stopped_at"),
}, (t) => [index("workers_name").on(t.name)]);

/**
 * Stored models: a projection of `artifact` events that carry a record, and of
 * `model_deleted` events, written in the same transaction as them (projections/models.ts).
 * A deleted model keeps its row with `deleted_at` set, so the log's history stays readable;
 * it is never listed, downloaded nor reused.
 */
export const models = sqliteTable("models", {
  name: text("name").primaryKey(),
  job_id: text("job_id").notNull(),
  model_type: text("model_type").notNull(),
  size: integer("size").notNull(),
  sha256: text("sha256").notNull(),
  stored_in: text("stored_in").notNull(),
  location: text("location").notNull(),
  worker_id: text("worker_id").notNull(),
  metrics: text("metrics", { mode: "json" }).$type<Record<string, unknown> | null>(),
  /** The training spec's fingerprint (`spec_fingerprint` in the metadata), for reuse. */
  fingerprint: text("fingerprint"),
  metadata: text("metadata", { mode: "json" }).$type<Record<string, unknown> | null>(),
  /** The seq of the `artifact` event: orders models recorded in the same millisecond. */
  recorded_seq: integer("recorded_seq").notNull(),
  created_at: text("created_at").notNull(),
  deleted_at: text("deleted_at"),
}, (t) => [
  index("models_reuse").on(t.model_type, t.fingerprint, t.recorded_seq),
  index("models_seq").on(t.recorded_seq),
]);
