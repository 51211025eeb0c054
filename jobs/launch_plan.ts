/**
 * What a claimed job is launched with: its command line (the registry's, with the model
 * type's runtime in place of {python}), its training spec, and an environment built from
 * scratch.
 */
import type { JobState } from "./state.ts";
import type { FailureReason } from "./events.ts";
import { type ModelType, PYTHON, type Registry } from "../models/registry.ts";
import type { Runtime } from "../models/runtime.ts";
import { launchSpec, specEnv, type TrainingSpec } from "../models/spec.ts";

/** A claimed job that can be spawned: its type, command line and training spec. */
export interface Prepared {
  job: JobState;
  type: ModelType;
  command: string[];
  spec: TrainingSpec;
}

export interface PlanOptions {
  registry: Registry;
  /** The runtime of a model type, checked again when it was missing. */
  runtime(type: string): Promise<Runtime>;
}

const RUNTIME_REUSE_MS = 1000;

/** Prepares claimed jobs for spawning, reusing runnable runtimes' checks for a while. */
export class LaunchPlanner {
  #runtimes = new Map<string, { runtime: Runtime; at: number }>();

  constructor(readonly opts: PlanOptions) {}

  /** The command of each job whose type and runtime are there; the others are failed. */
  async prepare(
    jobs: JobState[],
    failed: (job: JobState, reason: FailureReason, why: string) => void,
  ): Promise<Prepared[]> {
    const names = new Set(jobs.map((j) => j.model_type).filter((t) => this.opts.registry.has(t)));
    const runtimes = new Map<string, Runtime>();
    await Promise.all([...names].map(async (t) => runtimes.set(t, await this.#runtime(t))));
    const ready: Prepared[] = [];
    for (const job of jobs) {
      const type = this.opts.registry.get(job.model_type);
      const runtime = runtimes.get(job.model_type);
      if (!type || !runtime) {
        failed(job, "spawn_failed", `model type ${job.model_type} is not registered any more`);
      } else if (!runtime.runnable || !runtime.program) {
        failed(job, "runtime_missing", runtime.hint ?? "runtime missing");
      } else {
        const command = type.command.map((part) => part === PYTHON ? runtime.program! : part);
        ready.push({ job, type, command, spec: await launchSpec(job) });
      }
    }
    return ready;
  }

  /**
   * A model type's runtime. One check per type in a launch batch, and a runnable one is used
   * again for RUNTIME_REUSE_MS: across the thread each check is a round trip to the main
   * thread, which waits while it commits; measured at 7 ms of each job's launch (3,000 no-op
   * jobs, 16 slots, load 2-3). A runtime that goes missing is noticed a second late at most
   * (its jobs fail to spawn); a missing one is asked about every time, so an install is seen
   * at once.
   */
  async #runtime(type: string): Promise<Runtime> {
    const known = this.#runtimes.get(type);
    if (known && Date.now() - known.at < RUNTIME_REUSE_MS) return known.runtime;
    const runtime = await this.opts.runtime(type);
    if (runtime.runnable) this.#runtimes.set(type, { runtime, at: Date.now() });
    else this.#runtimes.delete(type);
    return runtime;
  }
}

/** Variables of the server's own environment every job gets. */
const BASE_ENV = ["PATH", "HOME", "LANG"];

/**
 * A job's whole environment: the few variables passed through, the supervisor's own extras
 * (below the TRAIN_* variables, which they cannot replace), the job's inputs, and its spec.
 */
export function jobEnv(
  job: JobState,
  passThrough: string[],
  spec: TrainingSpec,
  opts: { env?: Record<string, string>; modelsDir: string },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_ENV, ...passThrough]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return {
    ...env,
    ...opts.env,
    TRAIN_JOB_ID: job.job_id,
    TRAIN_MODEL_TYPE: job.model_type,
    TRAIN_ARTIFACT_PATH: job.artifact_path ?? "",
    TRAIN_OUTPUT_DIR: opts.modelsDir,
    TRAIN_USE_CV: String(job.use_cv),
    TRAIN_RETRAIN: String(job.retrain),
    TRAIN_HYPERPARAMETERS: JSON.stringify(job.hyperparameters),
    PYTHONUNBUFFERED: "1",
    ...specEnv(spec),
  };
}
