/** Mapping between a job's state and its `jobs` projection row. */
import type { FailureReason, JobStatus } from "../jobs/events.ts";
import type { JobProgress, JobState, ProcessInfo } from "../jobs/state.ts";
import type { jobs } from "./schema.ts";

export type JobRow = typeof jobs.$inferSelect;

/** The row a state is stored as (drizzle serializes the JSON columns). */
export function stateToRow(s: JobState): JobRow {
  return { ...s };
}

/** The state a row holds. Rows are only ever written from states, so the casts hold. */
export function rowToState(r: JobRow): JobState {
  return {
    ...r,
    status: r.status as JobStatus,
    failure_reason: r.failure_reason as FailureReason | null,
    hyperparameters: r.hyperparameters as Record<string, unknown>,
    metrics: r.metrics as Record<string, unknown>,
    warnings: r.warnings as string[],
    progress: r.progress as JobProgress | null,
    process: r.process as ProcessInfo | null,
  };
}
