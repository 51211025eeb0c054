/**
 * Job events: the only source of truth. Defined once with zod; the TypeScript types are
 * inferred, and every event is parsed on append and when read back.
 */
import { z } from "zod";

export const JOB_STATUSES = ["started", "running", "completed", "failed", "cancelled"] as const;
export const JobStatus = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatus>;

/** Machine-readable reasons a job failed. */
export const FAILURE_REASONS = [
  "exit_nonzero",
  "artifact_missing",
  "artifact_refused",
  "timeout",
  "interrupted",
  "killed",
  "runtime_missing",
  "spawn_failed",
  "child_failed",
  "dataset_not_found",
  "dataset_invalid",
  "invalid_hyperparameters",
  "runtime_error",
  "output_failed",
  "worker_lost",
  "upload_failed",
] as const;
export const FailureReason = z.enum(FAILURE_REASONS);
export type FailureReason = z.infer<typeof FailureReason>;

const Json = z.record(z.string(), z.unknown());

export const Submitted = z.object({
  type: z.literal("submitted"),
  data: z.object({
    model_type: z.string(),
    parent_id: z.string().nullable(),
    children: z.array(z.string()).nullable(),
    retrain: z.boolean(),
    use_cv: z.boolean(),
    hyperparameters: Json,
    timeout_seconds: z.number().positive(),
    artifact_path: z.string().nullable(),
    idempotency_key: z.string().nullable(),
    request_hash: z.string().nullable(),
    /** Runs a job may get when its worker is lost (hosted mode); 1 when absent. */
    max_attempts: z.number().int().min(1).max(10).optional(),
  }),
});

export const Started = z.object({
  type: z.literal("started"),
  data: z.object({
    pid: z.number().int(),
    pgid: z.number().int(),
    start_ticks: z.number().int().nullable(),
    worker_id: z.string(),
    command: z.array(z.string()),
    /** A remote worker's name (WORKER_NAME); absent for the local supervisor. */
    worker_name: z.string().optional(),
    /** Which run of the job this is, counted from 1 (hosted mode); absent means 1. */
    attempt: z.number().int().positive().optional(),
  }),
});

/** Who ran the attempt that a `requeued` event ends. */
const RequeuedAttempt = {
  attempt: z.number().int().positive(),
  worker_id: z.string(),
  worker_name: z.string().nullable(),
};

/**
 * An attempt of a job with attempts left ended without a result, and the job waits for a
 * worker again. `worker_lost`: the worker stopped heartbeating and its lease expired; any
 * process of that attempt is abandoned. `worker_stopped`: the worker was stopped gracefully
 * (SIGTERM) and stopped the job's process first (its `process_exited` comes just before).
 */
export const Requeued = z.object({
  type: z.literal("requeued"),
  data: z.discriminatedUnion("reason", [
    z.object({
      ...RequeuedAttempt,
      reason: z.literal("worker_lost"),
      last_heartbeat: z.string().nullable(),
      lease_expired_at: z.string(),
    }),
    z.object({ ...RequeuedAttempt, reason: z.literal("worker_stopped") }),
  ]),
});

export const Progress = z.object({
  type: z.literal("progress"),
  data: z.object({
    step: z.number().nullable(),
    total: z.number().nullable(),
    message: z.string().nullable(),
    metrics: Json.nullable(),
  }),
});

const Stream = z.enum(["stdout", "stderr"]);

/** A log event's lines as the API shows them, and as remote workers send them. */
export const LogLines = z.object({ stream: Stream, lines: z.array(z.string()) });

/**
 * The same lines as one text, joined by "\n" (so no line holds one), and how many there are
 * (at least one). The collector makes them, and the store keeps the text outside the JSON
 * data (migration 0007): encoding, cloning and parsing a million lines one by one cost more
 * than everything else on the write path together (see README, log ingestion).
 */
export const LogChunk = z.object({
  stream: Stream,
  text: z.string(),
  count: z.number().int().positive(),
});
/** Where a log event's lines are: `bytes` bytes of the job's log file from `offset`. */
export const LogFileRange = z.object({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/),
  offset: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  /** Length of the decoded text, in UTF-16 units (what a text column's length() counts). */
  chars: z.number().int().nonnegative(),
});
export type LogFileRange = z.infer<typeof LogFileRange>;

/**
 * The same lines kept in the job's log file (db/log_files.ts): where they are, and how many.
 * Readers replace it with the text; it never reaches the API as it is.
 */
export const LogInFile = z.object({
  stream: Stream,
  count: z.number().int().positive(),
  file: LogFileRange,
});
export type LogData =
  | z.infer<typeof LogLines>
  | z.infer<typeof LogChunk>
  | z.infer<typeof LogInFile>;

export const Log = z.object({
  type: z.literal("log"),
  data: z.union([LogChunk, LogInFile, LogLines]),
});

/** A log event's lines, for forms that carry them (a file range is read by db/ readers). */
export function logLines(data: LogData): string[] {
  if ("file" in data) throw new Error("a log file range has no lines until it is read");
  return "lines" in data ? data.lines : data.text.split("\n");
}

/** How many lines a log event holds, without splitting a chunk. */
export function logCount(data: LogData): number {
  return "lines" in data ? data.lines.length : data.count;
}

/** A log event's data as the API shows it: `{stream, lines}`. */
export function publicLog(data: LogData): z.infer<typeof LogLines> {
  if ("file" in data) throw new Error("a log file range has no lines until it is read");
  return "lines" in data ? data : { stream: data.stream, lines: logLines(data) };
}

export const Metrics = z.object({ type: z.literal("metrics"), data: z.object({ metrics: Json }) });

/** Where a model file is kept, and what it is: recorded once it is stored and verified. */
export const ArtifactRecord = z.object({
  /** The file name: the model's name in GET /train/models/available and its download. */
  name: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** The store: `folder /abs/path` or `s3://bucket/prefix`. */
  stored_in: z.string(),
  /** The file in that store: an absolute path or `s3://bucket/key`. */
  location: z.string(),
  /** The worker that trained it. */
  worker_id: z.string(),
  /**
   * What the script wrote next to the model (`<model>.meta.json`): model type, the training
   * spec's fingerprint, hyperparameters, metrics, dataset, library versions. Null when it
   * wrote none.
   */
  metadata: Json.nullable(),
});
export type ArtifactRecord = z.infer<typeof ArtifactRecord>;

/**
 * A script announced its model file (`path`), or, with `record`, the worker stored and
 * verified it when the job completed.
 */
export const Artifact = z.object({
  type: z.literal("artifact"),
  data: z.object({ path: z.string(), record: ArtifactRecord.optional() }),
});

/** A stored model was deleted (DELETE /train/models/{name}); appended to its job's stream. */
export const ModelDeleted = z.object({
  type: z.literal("model_deleted"),
  data: z.object({ name: z.string(), reason: z.string() }),
});

export const Warning = z.object({
  type: z.literal("warning"),
  data: z.object({ message: z.string() }),
});

export const Completed = z.object({
  type: z.literal("completed"),
  data: z.object({
    model_path: z.string().nullable(),
    exit_code: z.number().int().nullable(),
    reused: z.boolean(),
    message: z.string(),
  }),
});

export const Failed = z.object({
  type: z.literal("failed"),
  data: z.object({
    failure_reason: FailureReason,
    error: z.string(),
    exit_code: z.number().int().nullable(),
    signal: z.string().nullable(),
    evidence: Json.nullable(),
  }),
});

export const Cancelled = z.object({
  type: z.literal("cancelled"),
  data: z.object({ reason: z.string(), was_running: z.boolean() }),
});

/** The process of a job that was already cancelled or failed has ended; records how. */
export const ProcessExited = z.object({
  type: z.literal("process_exited"),
  data: z.object({
    exit_code: z.number().int().nullable(),
    signal: z.string().nullable(),
    stopped_with: z.enum(["SIGTERM", "SIGKILL"]).nullable(),
    /** No process of the group and none carrying the job's id was left alive. */
    group_gone: z.boolean(),
    /** Processes that had left the group (setsid) and were killed when the job ended. */
    strays_killed: z.array(z.number().int()).optional(),
  }),
});

export const JobEvent = z.discriminatedUnion("type", [
  Submitted,
  Started,
  Progress,
  Log,
  Metrics,
  Artifact,
  Warning,
  Completed,
  Failed,
  Cancelled,
  ProcessExited,
  Requeued,
  ModelDeleted,
]);
export type JobEvent = z.infer<typeof JobEvent>;
export type JobEventType = JobEvent["type"];
export type EventOf<T extends JobEventType> = Extract<JobEvent, { type: T }>;

/** An event as stored: its place in the global log and in its job's stream. */
export interface StoredEvent<E extends JobEvent = JobEvent> {
  seq: number;
  job_id: string;
  version: number;
  at: string;
  event: E;
}
