/**
 * The worker protocol: what a remote worker and the hosted API say to each other over HTTP,
 * defined once with zod and parsed at both ends (routes/worker.ts on the API, worker/ on the
 * worker). Every path is under `/worker` and needs `Authorization: Bearer $WORKER_TOKEN`.
 *
 * 1. `POST /worker/register` once at start: the API answers the worker's id and the lease
 *    length. Leases held by an earlier run of a worker of the same name expire at once.
 * 2. `POST /worker/claim` long-polls (up to `wait_seconds`, at most 20) for waiting jobs of
 *    the worker's model types. Each job comes with an `attempt` and a `lease_token`. A retry
 *    with the same `claim_id` answers the same jobs.
 * 3. Every report about a job (`started`, `output`, `exit`, `fail`, `release`) carries the
 *    `attempt` and `lease_token`. A stale one (the lease expired, or the job went to another attempt)
 *    is refused with 409 and `details[0].code = "lease_lost"`: the worker stops the process
 *    at once and drops the job.
 * 4. `POST /worker/heartbeat` every `heartbeat_seconds` extends the leases it lists and
 *    answers, per job, whether it was cancelled (`cancel_requested`) or lost (`lost`).
 * 5. Output goes in chunks numbered by `offset`: the number of output events of this attempt
 *    the API already holds before the chunk. A chunk sent again is not stored twice; a gap
 *    is refused with 409, `details[0].code = "offset_gap"` and the `expected_offset`.
 */
import { z } from "zod";
import {
  Artifact,
  ArtifactRecord,
  FailureReason,
  Log,
  LogLines,
  Metrics,
  Progress,
  Started,
  Warning,
} from "../jobs/events.ts";

const Json = z.record(z.string(), z.unknown());

/**
 * The worker's collector never sends more than this (jobs/output.ts: lines of at most 64 KiB,
 * a log event closed past 256 KiB); a WORKER_TOKEN holder sending more is refused, so that one
 * event cannot outgrow LOG_PAGE_BYTES or a status read.
 */
const MAX_LINE_CHARS = 64 * 1024;
const MAX_LOG_EVENT_CHARS = 512 * 1024;

// Workers send log events as lines: the contract is unchanged by how the store keeps them.
const WorkerLog = Log.extend({
  data: LogLines.extend({
    lines: z.array(z.string().max(MAX_LINE_CHARS)).max(MAX_LOG_EVENT_CHARS)
      .refine((lines) => lines.reduce((n, l) => n + l.length + 1, 0) <= MAX_LOG_EVENT_CHARS, {
        message: `a log event holds at most ${MAX_LOG_EVENT_CHARS} characters`,
      }),
  }),
});
const WorkerWarning = Warning.extend({
  data: Warning.shape.data.extend({ message: z.string().max(MAX_LINE_CHARS) }),
});

export const OutputEvent = z.discriminatedUnion("type", [
  WorkerLog,
  Progress,
  Metrics,
  Artifact,
  WorkerWarning,
]);

/** What the worker observed when a job's process ended (jobs/decide.ts decides on it). */
export const ExitReport = z.object({
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  /** The artifact the job produced, if the file exists and was accepted. */
  artifact: z.string().nullable(),
  /** Why the file the job produced is not accepted as a model (a symlink, say). */
  artifact_refused: z.string().nullable().optional(),
  stderr_tail: z.string(),
  /** A reason the script itself reported before exiting (protocol `error` message). */
  script_failure: z.object({ reason: FailureReason, message: z.string() }).nullable(),
  /** Why the worker stopped the process, if it did. */
  stopped_for: z.enum(["timeout", "cancel", "shutdown", "output_failed"]).nullable(),
  stopped_with: z.enum(["SIGTERM", "SIGKILL"]).nullable(),
  /** True only when neither the group nor any process carrying the job's id is alive. */
  group_gone: z.boolean(),
  /** Processes outside the group, carrying the job's id, killed when the job ended. */
  strays_killed: z.array(z.number().int()).optional(),
  timeout_seconds: z.number().optional(),
  /** Why the job's output could not be stored, when the worker gave up on it. */
  output_failure: z.string().nullable().optional(),
  /** The model as stored and verified in the artifact store (exit 0 with an artifact). */
  artifact_record: ArtifactRecord.nullable().optional(),
  /** Why the model could not be stored, after the worker's retries. */
  upload_failure: z.string().nullable().optional(),
});

/** The process a worker started for a job: the `started` event's data itself. */
export const StartInfo = Started.shape.data;

export const RegisterRequest = z.object({
  name: z.string().min(1).max(200),
  /** Model types this worker can run; it is only given jobs of these types. */
  model_types: z.array(z.string().min(1).max(100)).min(1).max(1000),
  max_concurrent: z.number().int().min(1).max(256),
});
export const RegisterResponse = z.object({
  worker_id: z.string(),
  lease_seconds: z.number(),
  heartbeat_seconds: z.number(),
});

export const ClaimRequest = z.object({
  worker_id: z.string().min(1),
  /** Chosen by the worker per claim; a retry after a lost answer sends the same one. */
  claim_id: z.string().min(1).max(100),
  max: z.number().int().min(1).max(256),
  /** How long the API may hold the request open when no job waits (default 20, at most 20). */
  wait_seconds: z.number().min(0).max(20).optional(),
});

/** A job as a worker needs it to run: what the local supervisor reads from the job state. */
export const ClaimedJob = z.object({
  job: z.object({
    job_id: z.string(),
    model_type: z.string(),
    retrain: z.boolean(),
    use_cv: z.boolean(),
    hyperparameters: Json,
    timeout_seconds: z.number(),
    artifact_path: z.string().nullable(),
  }).passthrough(),
  attempt: z.number().int().positive(),
  lease_token: z.string(),
  lease_expires_at: z.string(),
});
export const ClaimResponse = z.object({ jobs: z.array(ClaimedJob) });

/** The fence every report about a job carries. */
export const Lease = z.object({
  attempt: z.number().int().positive(),
  lease_token: z.string().min(1).max(200),
});

export const HeartbeatRequest = z.object({
  worker_id: z.string().min(1),
  leases: z.array(Lease.extend({ job_id: z.string() })).max(1000),
});
export const HeartbeatResponse = z.object({
  lease_seconds: z.number(),
  jobs: z.array(z.object({
    job_id: z.string(),
    /** The job was cancelled: stop its process (grace, then SIGKILL) and report the exit. */
    cancel_requested: z.boolean(),
    /** The lease is gone (expired or reassigned): stop the process at once, report nothing. */
    lost: z.boolean(),
  })),
});

export const StartedRequest = Lease.extend({ process: StartInfo });
export const StartedResponse = z.object({ cancelled: z.boolean() });

export const OutputRequest = Lease.extend({
  offset: z.number().int().min(0),
  events: z.array(OutputEvent).max(10_000),
});
export const OutputResponse = z.object({ next_offset: z.number().int() });

export const ExitRequest = Lease.extend({ report: ExitReport });
export const FailRequest = Lease.extend({
  reason: FailureReason,
  error: z.string().max(64 * 1024),
});
/**
 * A claim given back unstarted (the worker is shutting down): nothing ran, no attempt is used,
 * and the job waits for the next claim. A started attempt ends with `exit` instead (409).
 */
export const ReleaseRequest = Lease;

/** A worker stopping gracefully says so last: it is not counted live any more (GET /health). */
export const LeaveRequest = z.object({ worker_id: z.string().min(1).max(200) });
export const Ok = z.object({ ok: z.literal(true) });

/** `details[0].code` of a 409 answer to a report. */
export type RefusalCode = "lease_lost" | "offset_gap";
