/** Response shapes. The contract's fields come first and keep their names and meaning. */
import type { z } from "zod";
import type { ListItem, StatusView } from "../contract/responses.ts";
import type { JobState } from "../jobs/state.ts";

/**
 * A waiting job's place; a requeued one (hosted mode) also keeps why its last run ended, and
 * `note` says why it may wait longer.
 */
function waitingMessage(job: JobState, ahead: number, note: string | null): string {
  const place = `${ahead === 1 ? "1 job" : `${ahead} jobs`} ahead`;
  const text = job.attempt > 0 ? `${job.message}; ${place}` : `waiting for a free slot: ${place}`;
  return note ? `${text}; ${note}` : text;
}

/**
 * A job as `GET /train/status/{job_id}` shows it. `ahead` is the number of waiting jobs
 * submitted before a waiting job (null for any other job); `waitNote` adds to its message.
 */
export function statusView(
  job: JobState,
  logs: { lines: string[]; truncated: boolean },
  children: JobState[],
  ahead: number | null = null,
  waitNote: string | null = null,
): z.infer<typeof StatusView> {
  return {
    job_id: job.job_id,
    status: job.status,
    model_type: job.model_type,
    started_at: job.started_at,
    completed_at: job.completed_at,
    model_path: job.model_path,
    error: job.error,
    logs: logs.lines.join("\n"),
    message: ahead === null ? job.message : waitingMessage(job, ahead, waitNote),
    queue_position: ahead === null ? null : ahead + 1,
    failure_reason: job.failure_reason,
    exit_code: job.exit_code,
    created_at: job.created_at,
    updated_at: job.updated_at,
    cancelled_at: job.cancelled_at,
    progress: job.progress,
    metrics: job.metrics,
    warnings: job.warnings,
    retrain: job.retrain,
    use_cv: job.use_cv,
    hyperparameters: job.hyperparameters,
    timeout_seconds: job.timeout_seconds,
    parent_id: job.parent_id,
    children: job.children ? children.map(childView) : null,
    log_lines: job.log_lines,
    logs_truncated: logs.truncated,
    process: job.process &&
      {
        pid: job.process.pid,
        pgid: job.process.pgid,
        worker_id: job.process.worker_id,
        alive: job.process.alive,
        exit_code: job.process.exit_code,
        signal: job.process.signal,
        stopped_with: job.process.stopped_with,
        group_gone: job.process.group_gone,
        worker_name: job.process.worker_name ?? null,
      },
    worker: job.process
      ? { id: job.process.worker_id, name: job.process.worker_name ?? null }
      : null,
    attempt: job.attempt,
    max_attempts: job.max_attempts,
  };
}

function childView(c: JobState) {
  return {
    job_id: c.job_id,
    model_type: c.model_type,
    status: c.status,
    model_path: c.model_path,
    error: c.error,
    failure_reason: c.failure_reason,
    progress: c.progress,
    metrics: c.metrics,
  };
}

/** A job as `GET /train/jobs` lists it. */
export function listItem(job: JobState): z.infer<typeof ListItem> {
  return {
    job_id: job.job_id,
    status: job.status,
    model_type: job.model_type,
    created_at: job.created_at,
    started_at: job.started_at,
    completed_at: job.completed_at,
    model_path: job.model_path,
    failure_reason: job.failure_reason,
    parent_id: job.parent_id,
    progress: job.progress && { step: job.progress.step, total: job.progress.total },
    metrics: job.metrics,
  };
}
