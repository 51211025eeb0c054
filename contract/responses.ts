/**
 * Response bodies of the HTTP API, defined once with zod. The OpenAPI document is generated
 * from these schemas (contract/docs.ts), and the route code is typed against them, so the
 * document, the types and the bytes sent cannot drift apart.
 */
import { z } from "zod";
import { FailureReason, JobEvent, JobStatus, Log, LogLines } from "../jobs/events.ts";

const Json = z.record(z.string(), z.unknown());
const Time = z.string().meta({
  description: "ISO 8601 time in UTC",
  example: "2025-11-07T12:30:00Z",
});
const JobId = z.string().meta({
  description: "The job's UUID",
  example: "123e4567-e89b-12d3-a456-426614174000",
});

/** Every 4xx and 5xx answer: the error envelope. */
export const ErrorBody = z.object({
  status: z.literal("error"),
  message: z.string().meta({ description: "What went wrong and what to do about it" }),
  details: z.array(Json).meta({
    description: "One entry per problem, e.g. {field, message} for each invalid field",
  }),
});

export const Progress = z.object({
  step: z.number().nullable(),
  total: z.number().nullable(),
  message: z.string().nullable(),
  metrics: Json.nullable(),
  at: Time,
});

const Brief = z.object({ job_id: JobId, model_type: z.string(), status: JobStatus });

/** `POST /train`: the contract's flat Training Response. */
export const SubmitResponse = z.object({
  job_id: JobId,
  status: JobStatus,
  message: z.string(),
  model_type: z.string(),
  model_path: z.string().nullable(),
  children: z.array(Brief).optional().meta({ description: 'The jobs of "all", one per type' }),
});

/** `POST /train/{model_type}`: the contract's envelope. */
export const SubmitEnvelope = z.object({
  status: z.literal("success"),
  message: z.string(),
  data: z.object({
    job_id: JobId,
    model_type: z.string(),
    status: JobStatus,
    model_path: z.string().nullable(),
    children: z.array(Brief).optional(),
  }),
});

const ChildView = z.object({
  job_id: JobId,
  model_type: z.string(),
  status: JobStatus,
  model_path: z.string().nullable(),
  error: z.string().nullable(),
  failure_reason: FailureReason.nullable(),
  progress: Progress.nullable(),
  metrics: Json,
});

const ProcessView = z.object({
  pid: z.int(),
  pgid: z.int(),
  worker_id: z.string(),
  alive: z.boolean(),
  exit_code: z.int().nullable(),
  signal: z.string().nullable(),
  stopped_with: z.string().nullable(),
  group_gone: z.boolean().nullable(),
  worker_name: z.string().nullable().meta({
    description: "The remote worker that runs the process (hosted mode); null when local",
  }),
});

const WorkerView = z.object({
  id: z.string(),
  name: z.string().nullable(),
}).meta({ description: "The worker that ran (or runs) the job's latest attempt" });

/** A job as `GET /train/status/{job_id}` shows it. */
export const StatusView = z.object({
  job_id: JobId,
  status: JobStatus,
  model_type: z.string(),
  started_at: Time.nullable(),
  completed_at: Time.nullable(),
  model_path: z.string().nullable(),
  error: z.string().nullable(),
  logs: z.string().meta({
    description:
      "The newest lines of output, at most LOG_TAIL_LINES lines and LOG_TAIL_BYTES bytes",
  }),
  logs_truncated: z.boolean().meta({
    description: "True when the byte cap left lines out or cut the newest one",
  }),
  message: z.string(),
  queue_position: z.int().nullable().meta({
    description: "1-based place among waiting jobs in submission order; null unless waiting",
  }),
  failure_reason: FailureReason.nullable(),
  exit_code: z.int().nullable(),
  created_at: Time,
  updated_at: Time,
  cancelled_at: Time.nullable(),
  progress: Progress.nullable(),
  metrics: Json,
  warnings: z.array(z.string()),
  retrain: z.boolean(),
  use_cv: z.boolean(),
  hyperparameters: Json,
  timeout_seconds: z.number(),
  parent_id: JobId.nullable(),
  children: z.array(ChildView).nullable(),
  log_lines: z.int(),
  process: ProcessView.nullable(),
  worker: WorkerView.nullable(),
  attempt: z.int().meta({ description: "The job's latest run, from 1; 0 before it starts" }),
  max_attempts: z.int().meta({
    description: "Runs allowed when a worker is lost or stopped (hosted mode)",
  }),
});

export const StatusResponse = z.object({
  status: z.literal("success"),
  message: z.string(),
  data: StatusView,
});

/** A job as `GET /train/jobs` lists it. */
export const ListItem = z.object({
  job_id: JobId,
  status: JobStatus,
  model_type: z.string(),
  created_at: Time,
  started_at: Time.nullable(),
  completed_at: Time.nullable(),
  model_path: z.string().nullable(),
  failure_reason: FailureReason.nullable(),
  parent_id: JobId.nullable(),
  progress: z.object({ step: z.number().nullable(), total: z.number().nullable() }).nullable(),
  metrics: Json,
});

export const JobList = z.object({
  jobs: z.array(ListItem),
  total_count: z.int().meta({ description: "All jobs" }),
  filtered_count: z.int().meta({ description: "Jobs that match the filters" }),
});

export const CancelResponse = z.object({
  status: z.literal("success"),
  message: z.string(),
  data: z.object({ job_id: JobId, status: JobStatus, cancelled_at: Time.nullable() }),
});

export const ModelStatus = z.enum(["ok", "missing", "corrupt", "unrecorded"]).meta({
  description: "ok: recorded and present (with check=true, its sha256 matches too); missing: " +
    "recorded, but the file is gone from the store; corrupt (check=true only): the file's size " +
    "or sha256 differs from its record; unrecorded: a file in the store the log does not know",
});

export const ModelsResponse = z.object({
  available_models: z.record(
    z.string(),
    z.object({
      path: z.string().meta({
        description: "The file: relative to the working directory when inside it, or s3://",
      }),
      type: z.string(),
      size: z.int(),
      modified: z.string().meta({
        description: "The file's modification time (the record's time when the file is " +
          "missing), UTC to the second, without a zone",
        example: "2025-10-30T14:00:00",
      }),
      job_id: JobId.nullable(),
      metadata: Json.nullable(),
      sha256: z.string().nullable().meta({
        description: "As recorded when the model was stored; for an unrecorded file, null " +
          "unless check=true computed it",
      }),
      metrics: Json.nullable(),
      stored_in: z.string().meta({
        description: "The store: `folder /abs/path` or `s3://bucket/prefix`",
      }),
      status: ModelStatus,
      problem: z.string().nullable().meta({ description: "Why the status is not ok" }),
    }),
  ),
  models_directory: z.string(),
  artifact_store: z.string().meta({ description: "The store models are kept in (ARTIFACT_STORE)" }),
  checked: z.boolean().meta({ description: "True when check=true compared every sha256" }),
  counts: z.object({ ok: z.int(), missing: z.int(), corrupt: z.int(), unrecorded: z.int() }).meta({
    description: "How many listed models have each status",
  }),
});

export const DeleteModelResponse = z.object({
  status: z.literal("success"),
  message: z.string(),
  data: z.object({
    name: z.string(),
    job_id: JobId,
    deleted_at: Time,
    file_removed: z.boolean().meta({
      description: "False when the store no longer had the file, or could not remove it",
    }),
    warning: z.string().nullable(),
  }),
});

export const LogsResponse = z.object({
  job_id: JobId,
  entries: z.array(z.object({
    seq: z.int(),
    at: Time,
    stream: z.enum(["stdout", "stderr"]),
    lines: z.array(z.string()),
  })),
  next_after: z.int().meta({ description: "Pass as ?after= to read on" }),
  truncated: z.boolean().meta({ description: "True when LOG_PAGE_BYTES ended the page" }),
  more: z.boolean().meta({ description: "True when more entries follow next_after" }),
});

const Stored = { seq: z.int(), version: z.int(), at: Time };
// Log lines go out as arrays, however they are stored (LogChunk in jobs/events.ts).
const Shown = JobEvent.options.map((o) => o === Log ? Log.extend({ data: LogLines }) : o);

export const EventsResponse = z.object({
  job_id: JobId,
  events: z.array(
    z.discriminatedUnion("type", [
      Shown[0].extend(Stored),
      ...Shown.slice(1).map((o) => o.extend(Stored)),
    ]),
  ),
  next_after: z.int().meta({ description: "Pass as ?after= to read on" }),
  truncated: z.boolean().meta({ description: "True when LOG_PAGE_BYTES ended the page" }),
  more: z.boolean().meta({ description: "True when more entries follow next_after" }),
});

const Runtime = z.union([
  z.object({
    runnable: z.boolean(),
    program: z.string().nullable(),
    missing: z.array(z.string()),
    hint: z.string().nullable(),
  }),
  z.object({ runnable: z.null(), checking: z.literal(true) }),
]);

const WorkerHealth = z.object({
  worker_id: z.string(),
  name: z.string(),
  model_types: z.array(z.string()),
  max_concurrent: z.int(),
  registered_at: Time,
  last_heartbeat: Time,
  running: z.int(),
  alive: z.boolean().meta({
    description: "Heard from within LEASE_SECONDS, and not stopped",
  }),
  stopped_at: Time.nullable().meta({
    description: "When it stopped gracefully (SIGTERM); null while it runs, or if it died",
  }),
});

export const HealthResponse = z.object({
  status: z.enum(["ok", "error", "shutting_down"]),
  database: z.string(),
  queue_depth: z.int(),
  running: z.int(),
  max_concurrent_jobs: z.int(),
  model_types: z.record(z.string(), Runtime),
  uptime_seconds: z.int(),
  workers_mode: z.enum(["local", "remote"]),
  workers: z.array(WorkerHealth).optional().meta({
    description: "Hosted mode: the workers heard from most recently, newest first",
  }),
});
