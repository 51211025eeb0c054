/**
 * What happens to a job's files when its process has ended: the model it produced is checked,
 * its training spec recorded and the model stored (a job completes only with a stored model),
 * and the files of a job that did not complete are removed. Runs on the supervisor's thread
 * (or in a remote worker) for every job end.
 */
import type { ExitReport } from "./decide.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import { acceptArtifact, removeArtifacts } from "../models/artifacts.ts";
import { recordSpecSync, type TrainingSpec } from "../models/spec.ts";
import { storeModel } from "../models/store_model.ts";

/** The parts of a job's exit report that its model decides. */
export type ModelOutcome = Pick<
  ExitReport,
  "artifact" | "artifact_refused" | "artifact_record" | "upload_failure"
>;

export interface ModelOptions {
  modelsDir: string;
  /** The model file the job named (its protocol message, else its TRAIN_ARTIFACT_PATH). */
  path: string | null;
  /** The job was stopped (cancel, timeout, shutdown): whatever it wrote is not a model. */
  stopped: boolean;
  /** The process exited 0. */
  success: boolean;
  spec: TrainingSpec;
  /** False once the job's lease went to another attempt (remote workers). */
  holdsLease(): boolean;
  artifacts?: ArtifactStore;
  workerId: string;
  log: (message: string) => void;
}

/** Checks, records and stores the model a job produced; what its exit report says of it. */
export async function settleModel(o: ModelOptions): Promise<ModelOutcome> {
  const produced = o.stopped || !o.path ? null : await acceptArtifact(o.modelsDir, o.path);
  const artifact = produced && "path" in produced ? produced.path : null;
  const outcome: ModelOutcome = {
    artifact,
    artifact_refused: produced && "refused" in produced ? produced.refused : null,
  };
  if (o.stopped || !o.success || !artifact) return outcome;
  let metadata: Record<string, unknown> | null | undefined;
  try {
    metadata = recordSpecSync(artifact, o.spec).metadata;
  } catch (e) {
    o.log(`could not record its training spec (${e})`);
  }
  if (!o.holdsLease()) {
    // Its lease went to another attempt: storing now could replace that attempt's model.
    outcome.upload_failure = "the job's lease was lost before its model was stored";
  } else if (o.artifacts) {
    const stored = await storeModel(o.artifacts, artifact, {
      workerId: o.workerId,
      metadata,
      log: o.log,
    });
    if ("record" in stored) outcome.artifact_record = stored.record;
    else outcome.upload_failure = stored.failure;
  }
  return outcome;
}

/**
 * Removes what a job that did not complete wrote: its exact files (the model it named and the
 * one it was given), nothing else, and only files written since its launch.
 */
export async function removeJobFiles(
  modelsDir: string,
  job: { paths: (string | null)[]; pid: number; launchedAt: number },
  log: (message: string) => void,
): Promise<void> {
  const paths = new Set(job.paths.filter((p) => p !== null));
  for (const path of paths) {
    await removeArtifacts(modelsDir, path, { pid: job.pid, writtenSince: job.launchedAt, log })
      .catch((e) => log(`could not remove its files (${e})`));
  }
}

/** The `error` text keeps the end of stderr: 10 lines at most, 8 KiB at most (its newest). */
const STDERR_TAIL_LINES = 10;
const STDERR_TAIL_CHARS = 8 * 1024;

/**
 * The last lines of stderr for a failed job's `error`, bounded: a script's lines can each be
 * 64 KiB, and the error is in every status read and in every child of an `all` job.
 */
export function stderrTail(lines: readonly string[]): string {
  const text = lines.slice(-STDERR_TAIL_LINES).join("\n");
  return text.length <= STDERR_TAIL_CHARS
    ? text
    : `… ${text.slice(-STDERR_TAIL_CHARS).toWellFormed()}`;
}

/** True when `p` settles within `ms`. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
