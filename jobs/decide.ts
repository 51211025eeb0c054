/**
 * The job state machine's write side: `decide(command, state)` returns the events a command
 * produces or throws a typed error. Pure: no I/O, no clock (times are stamped on append).
 */
import type { z } from "zod";
import type { ExitReport as ExitReportSchema } from "../contract/worker.ts";
import type { EventOf, FailureReason, JobEvent } from "./events.ts";
import { isTerminal, type JobState } from "./state.ts";
import { ConflictError, NotFoundError } from "../errors.ts";

export type OutputEvent = EventOf<"log" | "progress" | "metrics" | "artifact" | "warning">;

/** What a worker observed when a job's process ended (defined once, in the worker contract). */
export type ExitReport = z.infer<typeof ExitReportSchema>;

export type Command =
  | {
    type: "submit";
    data: EventOf<"submitted">["data"];
    /** A finished model trained with the same spec, which stands in for training. */
    reuse: { path: string; fingerprint: string } | null;
  }
  | { type: "start"; data: EventOf<"started">["data"] }
  | { type: "output"; events: OutputEvent[] }
  | { type: "exit"; report: ExitReport }
  | { type: "cancel"; reason: string }
  | { type: "fail"; reason: FailureReason; error: string; evidence?: Record<string, unknown> }
  /** Processes of an ended job, still carrying its id, were found and killed (at restart). */
  | { type: "strays_killed"; pids: number[] }
  /** The lease of a job with attempts left expired: it waits for a worker again. */
  | { type: "requeue"; data: EventOf<"requeued">["data"] }
  /**
   * Deletes a model this job stored. The caller checks that the model is recorded, live and
   * not in use (the `models` projection knows that; a job's state does not).
   */
  | { type: "delete_model"; name: string; reason: string };

/** Decides one command against one job's state. */
export function decide(command: Command, state: JobState | undefined, jobId: string): JobEvent[] {
  if (command.type === "submit") {
    if (state) throw new ConflictError(`job ${jobId} already exists`);
    const submitted: JobEvent = { type: "submitted", data: command.data };
    if (command.reuse === null) return [submitted];
    return [submitted, {
      type: "completed",
      data: {
        model_path: command.reuse.path,
        exit_code: null,
        reused: true,
        message: `reused ${command.reuse.path.split("/").at(-1)}: trained with the same spec ` +
          `${command.reuse.fingerprint.slice(0, 8)}; not retrained ` +
          `(send "retrain": true to train a new one)`,
      },
    }];
  }
  if (!state) throw new NotFoundError(`no job with id ${jobId}`);
  switch (command.type) {
    case "start":
      // A job cancelled while its process was being spawned still records the process, so
      // the worker can stop it and the log keeps the evidence.
      if (state.children) throw new ConflictError(`job ${jobId} runs as its children`);
      if (state.process) throw new ConflictError(`job ${jobId} was already started`);
      if (state.status !== "started" && state.status !== "cancelled") {
        throw new ConflictError(`job ${jobId} is ${state.status}, it cannot start`);
      }
      return [{ type: "started", data: command.data }];
    case "output":
      return state.process?.alive ? command.events : [];
    case "exit":
      return decideExit(command.report, state);
    case "cancel":
      if (isTerminal(state.status)) {
        throw new ConflictError(
          `job ${jobId} is already ${state.status}; only started or running jobs can be cancelled`,
        );
      }
      return [{
        type: "cancelled",
        data: { reason: command.reason, was_running: state.status === "running" },
      }];
    case "fail":
      if (isTerminal(state.status)) return [];
      return [{
        type: "failed",
        data: {
          failure_reason: command.reason,
          error: command.error,
          exit_code: null,
          signal: null,
          evidence: command.evidence ?? null,
        },
      }];
    case "strays_killed":
      if (command.pids.length === 0) return [];
      return [{
        type: "warning",
        data: {
          message: `killed ${command.pids.length} process(es) still carrying this job's ` +
            `TRAIN_JOB_ID after it ended (pids ${command.pids.join(", ")})`,
        },
      }];
    case "requeue":
      if (isTerminal(state.status) || state.children) return [];
      return [{ type: "requeued", data: command.data }];
    case "delete_model":
      // Only a completed job has a stored model; it cannot change any more.
      if (state.status !== "completed") {
        throw new ConflictError(
          `job ${jobId} is ${state.status}; only a completed job's model can be deleted`,
        );
      }
      return [{ type: "model_deleted", data: { name: command.name, reason: command.reason } }];
    default: {
      const never: never = command;
      throw new Error(`unhandled command ${JSON.stringify(never)}`);
    }
  }
}

function decideExit(r: ExitReport, state: JobState): JobEvent[] {
  const processEnded: JobEvent = {
    type: "process_exited",
    data: {
      exit_code: r.exit_code,
      signal: r.signal,
      stopped_with: r.stopped_with,
      group_gone: r.group_gone,
      ...(r.strays_killed?.length ? { strays_killed: r.strays_killed } : {}),
    },
  };
  // Only a recorded process can end: a parent job's "running" is derived from its children.
  if (!state.process) return [];
  if (state.status !== "running") return state.process.alive ? [processEnded] : [];
  const failed = (reason: FailureReason, error: string): JobEvent[] => [{
    type: "failed",
    data: {
      failure_reason: reason,
      error,
      exit_code: r.exit_code,
      signal: r.signal,
      evidence: r.stopped_for
        ? {
          stopped_for: r.stopped_for,
          stopped_with: r.stopped_with,
          group_gone: r.group_gone,
          ...(r.strays_killed?.length ? { strays_killed: r.strays_killed } : {}),
        }
        : null,
    },
  }, processEnded];
  const tail = r.stderr_tail ? `\n${r.stderr_tail}` : "";
  // Its log is incomplete whatever else happened: that is what the job must be known for.
  if (r.output_failure) return failed("output_failed", r.output_failure);
  if (r.stopped_for === "timeout") {
    return failed("timeout", `time limit of ${r.timeout_seconds ?? "?"} s exceeded${tail}`);
  }
  if (r.stopped_for === "shutdown") {
    // A remote worker's stop is its own, not the server's.
    const { worker_name, worker_id, attempt = 1 } = state.process;
    if (worker_name !== undefined && attempt < state.max_attempts && r.group_gone) {
      // Another worker may run it: a graceful stop (a spot VM's SIGTERM) uses up an attempt,
      // as a lost worker does, and the next claim is the next attempt. Not while a process
      // of this attempt may live on (its group outlived SIGKILL): two runs could overlap.
      return [processEnded, {
        type: "requeued",
        data: { attempt, reason: "worker_stopped", worker_id, worker_name },
      }];
    }
    const who = worker_name ? `worker ${worker_name}` : "the server";
    return failed("interrupted", `${who} shut down while the job was running`);
  }
  if (r.exit_code === 0 && r.artifact && r.upload_failure) {
    return failed("upload_failed", r.upload_failure);
  }
  if (r.exit_code === 0 && r.artifact) {
    const record: JobEvent[] = r.artifact_record
      ? [{ type: "artifact", data: { path: r.artifact, record: r.artifact_record } }]
      : [];
    return [...record, {
      type: "completed",
      data: {
        model_path: r.artifact,
        exit_code: 0,
        reused: false,
        message: "Training completed successfully",
      },
    }, processEnded];
  }
  if (r.exit_code === 0 && r.artifact_refused) {
    return failed("artifact_refused", `${r.artifact_refused}; the model is not accepted${tail}`);
  }
  if (r.exit_code === 0) {
    return failed("artifact_missing", `the script exited 0 but wrote no model file${tail}`);
  }
  if (r.script_failure) {
    return failed(r.script_failure.reason, `${r.script_failure.message}${tail}`);
  }
  if (r.exit_code === null) {
    return failed("killed", `the process was killed by ${r.signal ?? "a signal"}${tail}`);
  }
  return failed("exit_nonzero", `the script exited with code ${r.exit_code}${tail}`);
}
