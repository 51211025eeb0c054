/**
 * Given / when / then for the pure state machine: build a job's state from events, decide
 * a command against it, apply what was decided. No database.
 */
import { type Command, decide, type ExitReport } from "../../jobs/decide.ts";
import type { EventOf, JobEvent, StoredEvent } from "../../jobs/events.ts";
import { evolve, type JobState } from "../../jobs/state.ts";

export const JOB = "00000000-0000-4000-8000-000000000001";

let seq = 0;

/** A stored event with a fresh global seq and a time that grows with it. */
export function stored(jobId: string, version: number, event: JobEvent): StoredEvent {
  seq++;
  return {
    seq,
    job_id: jobId,
    version,
    at: new Date(Date.UTC(2025, 0, 1, 0, 0, seq)).toISOString(),
    event,
  };
}

export function submittedData(
  over: Partial<EventOf<"submitted">["data"]> = {},
): EventOf<"submitted">["data"] {
  return {
    model_type: "xgboost",
    parent_id: null,
    children: null,
    retrain: true,
    use_cv: true,
    hyperparameters: {},
    timeout_seconds: 60,
    artifact_path: "/models/xgboost_model_x.joblib",
    idempotency_key: null,
    request_hash: null,
    ...over,
  };
}

export function startedData(
  over: Partial<EventOf<"started">["data"]> = {},
): EventOf<"started">["data"] {
  return { pid: 4242, pgid: 4242, start_ticks: 99, worker_id: "w1", command: ["sh"], ...over };
}

export function exitReport(over: Partial<ExitReport> = {}): ExitReport {
  return {
    exit_code: 0,
    signal: null,
    artifact: "/models/xgboost_model_x.joblib",
    stderr_tail: "",
    script_failure: null,
    stopped_for: null,
    stopped_with: null,
    group_gone: true,
    ...over,
  };
}

/** Applies events to a state (undefined for a new job). */
export function apply(
  state: JobState | undefined,
  events: JobEvent[],
  jobId = state?.job_id ?? JOB,
): JobState | undefined {
  let s = state;
  for (const e of events) s = evolve(s, stored(jobId, (s?.version ?? 0) + 1, e));
  return s;
}

/** A job's state after the given commands, each decided against the state before it. */
export function given(commands: Command[], jobId = JOB): JobState {
  let s: JobState | undefined;
  for (const c of commands) s = apply(s, decide(c, s, jobId), jobId);
  if (!s) throw new Error("given: no job");
  return s;
}

/** Decides a command and applies it: the events and the state after them. */
export function when(state: JobState | undefined, command: Command, jobId = state?.job_id ?? JOB) {
  const events = decide(command, state, jobId);
  return { events, state: apply(state, events, jobId)! };
}

export const submit = (over: Partial<EventOf<"submitted">["data"]> = {}): Command => ({
  type: "submit",
  data: submittedData(over),
  reuse: null,
});
export const start = (over: Partial<EventOf<"started">["data"]> = {}): Command => ({
  type: "start",
  data: startedData(over),
});
export const exit = (over: Partial<ExitReport> = {}): Command => ({
  type: "exit",
  report: exitReport(over),
});
export const cancel: Command = { type: "cancel", reason: "by test" };
export const logLines = (...lines: string[]): Command => ({
  type: "output",
  events: [{ type: "log", data: { stream: "stdout", lines } }],
});
