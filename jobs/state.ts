/**
 * The job state machine's read side: a pure `evolve(state, event)`. The `jobs` projection
 * row is exactly this state, so the projection equals a replay of the log by construction.
 */
import { type FailureReason, type JobStatus, logCount, type StoredEvent } from "./events.ts";

export interface JobProgress {
  step: number | null;
  total: number | null;
  message: string | null;
  metrics: Record<string, unknown> | null;
  at: string;
}

export interface ProcessInfo {
  pid: number;
  pgid: number;
  start_ticks: number | null;
  worker_id: string;
  command: string[];
  worker_name?: string;
  attempt?: number;
  /** True from `started` until the process is known to have ended. */
  alive: boolean;
  exit_code: number | null;
  signal: string | null;
  stopped_with: string | null;
  group_gone: boolean | null;
}

export interface JobState {
  job_id: string;
  version: number;
  submitted_seq: number;
  parent_id: string | null;
  children: string[] | null;
  model_type: string;
  status: JobStatus;
  message: string;
  retrain: boolean;
  use_cv: boolean;
  hyperparameters: Record<string, unknown>;
  timeout_seconds: number;
  artifact_path: string | null;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  completed_at: string | null;
  cancelled_at: string | null;
  model_path: string | null;
  error: string | null;
  failure_reason: FailureReason | null;
  exit_code: number | null;
  progress: JobProgress | null;
  metrics: Record<string, unknown>;
  warnings: string[];
  log_lines: number;
  process: ProcessInfo | null;
  /** The run of the job that started last (0 before the first claim). */
  attempt: number;
  max_attempts: number;
}

export const TERMINAL: ReadonlySet<JobStatus> = new Set(["completed", "failed", "cancelled"]);

/** True once a job can no longer change status. */
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

/** True while a job waits for a slot: submitted, not spawned, and not a parent of "all". */
export function isWaiting(job: JobState): boolean {
  return job.status === "started" && job.process === null && job.children === null;
}

/** Warnings kept on the state; older ones stay in the event log. */
const MAX_WARNINGS = 20;

/** Applies one event. Pure: same inputs, same output; never mutates its arguments. */
export function evolve(state: JobState | undefined, stored: StoredEvent): JobState {
  const { event, at } = stored;
  if (event.type === "submitted") {
    if (state) throw new Error(`job ${stored.job_id} submitted twice`);
    return {
      job_id: stored.job_id,
      version: stored.version,
      submitted_seq: stored.seq,
      ...event.data,
      status: "started",
      message: `Training initiated for ${
        event.data.model_type === "all" ? "all model types" : event.data.model_type
      }`,
      created_at: at,
      updated_at: at,
      started_at: null,
      completed_at: null,
      cancelled_at: null,
      model_path: null,
      error: null,
      failure_reason: null,
      exit_code: null,
      progress: null,
      metrics: {},
      warnings: [],
      log_lines: 0,
      process: null,
      attempt: 0,
      max_attempts: event.data.max_attempts ?? 1,
    };
  }
  if (!state) throw new Error(`event ${event.type} for unknown job ${stored.job_id}`);
  const s: JobState = { ...state, version: stored.version, updated_at: at };
  switch (event.type) {
    case "started": {
      const process: ProcessInfo = {
        ...event.data,
        alive: true,
        exit_code: null,
        signal: null,
        stopped_with: null,
        group_gone: null,
      };
      const attempt = event.data.attempt ?? s.attempt + 1;
      if (s.status !== "started") return { ...s, process, attempt };
      return {
        ...s,
        process,
        attempt,
        status: "running",
        started_at: at,
        message: "Training running",
      };
    }
    case "model_deleted":
      // model_path still says what the job made; the message says it is gone.
      return {
        ...s,
        message: `${s.message}; its model ${event.data.name} was deleted at ${at} ` +
          `(${event.data.reason})`,
      };
    case "requeued": {
      const worker = event.data.worker_name ?? event.data.worker_id;
      return {
        ...s,
        status: s.status === "running" ? "started" : s.status,
        process: null,
        started_at: null,
        progress: null,
        exit_code: null,
        // The next attempt starts afresh; the lost one's events stay in the log.
        metrics: {},
        attempt: event.data.attempt,
        message: `Waiting for a worker: attempt ${event.data.attempt} of ${s.max_attempts} was ` +
          (event.data.reason === "worker_lost"
            ? `lost with worker ${worker}`
            : `stopped when worker ${worker} shut down`),
      };
    }
    case "progress":
      return { ...s, progress: { ...event.data, at } };
    case "log":
      return { ...s, log_lines: s.log_lines + logCount(event.data) };
    case "metrics":
      return { ...s, metrics: { ...s.metrics, ...event.data.metrics } };
    case "artifact":
      return { ...s, artifact_path: event.data.path };
    case "warning":
      return { ...s, warnings: [...s.warnings, event.data.message].slice(-MAX_WARNINGS) };
    case "completed":
      return {
        ...s,
        status: "completed",
        completed_at: at,
        model_path: event.data.model_path,
        exit_code: event.data.exit_code,
        message: event.data.message,
        process: exited(s.process, event.data.exit_code, null),
      };
    case "failed":
      return {
        ...s,
        status: "failed",
        completed_at: at,
        error: event.data.error,
        failure_reason: event.data.failure_reason,
        exit_code: event.data.exit_code,
        message: `Training failed: ${event.data.failure_reason}`,
        process: exited(s.process, event.data.exit_code, event.data.signal),
      };
    case "cancelled":
      return {
        ...s,
        status: "cancelled",
        cancelled_at: at,
        completed_at: at,
        message: `Job cancelled: ${event.data.reason}`,
      };
    case "process_exited":
      return {
        ...s,
        exit_code: s.exit_code ?? event.data.exit_code,
        process: s.process && {
          ...s.process,
          alive: false,
          exit_code: event.data.exit_code,
          signal: event.data.signal,
          stopped_with: event.data.stopped_with,
          group_gone: event.data.group_gone,
        },
      };
    default: {
      const never: never = event;
      throw new Error(`unhandled event ${JSON.stringify(never)}`);
    }
  }
}

/** A process that ended along with its job's final event (failed or completed). */
function exited(p: ProcessInfo | null, exitCode: number | null, signal: string | null) {
  return p && p.alive ? { ...p, alive: false, exit_code: exitCode, signal } : p;
}

/**
 * A parent ("all") job's status, times and progress follow from its children. Pure and
 * idempotent: deriving twice gives the same state, so it may run after every child change.
 */
export function deriveParent(parent: JobState, children: JobState[]): JobState {
  const done = children.filter((c) => isTerminal(c.status));
  const starts = children.map((c) => c.started_at).filter((t): t is string => t !== null);
  const ends = done.map((c) => c.completed_at).filter((t): t is string => t !== null);
  const status = parentStatus(parent, children);
  // A parent reports a failure only once it has failed: while children still run, or after
  // a cancel, its `error` stays null and each child's own status shows what went wrong.
  const failedKids = status === "failed" ? children.filter((c) => c.status === "failed") : [];
  return {
    ...parent,
    status,
    started_at: starts.length ? starts.sort()[0] : null,
    completed_at: parent.cancelled_at ??
      (done.length === children.length && ends.length ? ends.sort().at(-1)! : null),
    model_path: null,
    error: failedKids.length
      ? failedKids.map((c) => `${c.model_type}: ${c.error ?? "failed"}`).join("\n")
      : null,
    failure_reason: failedKids.length ? "child_failed" : null,
    message: parentMessage(status, children),
    progress: parentProgress(children),
    metrics: Object.fromEntries(children.map((c) => [c.model_type, c.metrics])),
  };
}

/** Units of a parent's progress per child: each model type counts the same. */
const PER_CHILD = 1000;

/**
 * A parent's progress: each child's share of its own total, in thousandths, so that a type
 * reporting 1,800 small steps does not outweigh one reporting 180. A completed child counts in
 * full; one with no progress yet counts 0. Null until some child has reported or completed.
 */
function parentProgress(children: JobState[]): JobProgress | null {
  const shares = children.map((c) => {
    const p = c.progress;
    if (c.status === "completed") return { done: PER_CHILD, at: c.completed_at ?? p?.at };
    if (!p || p.step === null || p.total === null || p.total <= 0) return { done: 0, at: p?.at };
    // Short of full until it completes: a child at its last step is not done yet.
    const share = Math.floor(PER_CHILD * Math.max(0, p.step / p.total));
    return { done: Math.min(PER_CHILD - 1, share), at: p.at };
  });
  const times = shares.map((s) => s.at).filter((t): t is string => !!t).sort();
  if (times.length === 0) return null;
  return {
    step: shares.reduce((n, s) => n + s.done, 0),
    total: PER_CHILD * children.length,
    message: children.map((c, i) => `${c.model_type} ${Math.floor(shares[i].done / 10)}%`)
      .join(", "),
    metrics: null,
    at: times.at(-1)!,
  };
}

function parentStatus(parent: JobState, children: JobState[]): JobStatus {
  if (parent.cancelled_at) return "cancelled";
  if (children.every((c) => isTerminal(c.status))) {
    if (children.every((c) => c.status === "completed")) return "completed";
    return children.some((c) => c.status === "failed") ? "failed" : "cancelled";
  }
  return children.some((c) => c.status !== "started") ? "running" : "started";
}

function parentMessage(status: JobStatus, children: JobState[]): string {
  const counts = children.map((c) => `${c.model_type}: ${c.status}`).join(", ");
  if (status === "started") return "Training initiated for all model types";
  return `All model types ${status === "running" ? "in progress" : status} (${counts})`;
}
