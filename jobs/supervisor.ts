/**
 * The local supervisor: runs waiting jobs as child processes, at most `maxConcurrent` at
 * once in submission order. Each job runs without a shell, in its own process group, with
 * an environment built from scratch. Cancels and time limits stop the whole group: SIGTERM,
 * then SIGKILL after the grace period.
 */
import type { ExitReport } from "./decide.ts";
import type { JobState } from "./state.ts";
import { OutputCollector } from "./output.ts";
import { groupAlive, readStartTicks, signalGroup, stopGroup, type StopSignal } from "./process.ts";
import type { WorkerPort } from "./worker_port.ts";
import { PYTHON, type Registry } from "../models/registry.ts";
import type { Runtime } from "../models/runtime.ts";
import { removeArtifacts } from "../models/artifacts.ts";

export interface SupervisorOptions {
  registry: Registry;
  /** The runtime of a model type, checked again when it was missing. */
  runtime(type: string): Promise<Runtime>;
  modelsDir: string;
  maxConcurrent: number;
  graceSeconds: number;
  workerId: string;
  log?: (message: string) => void;
}

type StopReason = "cancel" | "timeout" | "shutdown";

interface Running {
  job: JobState;
  child: Deno.ChildProcess;
  stopping: StopReason | null;
  stopped: Promise<{ stopped_with: StopSignal | null; group_gone: boolean }> | null;
  timer: ReturnType<typeof setTimeout> | null;
  done: Promise<void>;
}

/** Variables of the server's own environment every job gets. */
const BASE_ENV = ["PATH", "HOME", "LANG"];

export class Supervisor {
  #running = new Map<string, Running>();
  #launching = 0;
  #accepting = true;
  #pumping = false;

  constructor(readonly port: WorkerPort, readonly opts: SupervisorOptions) {}

  /** Starts taking work. */
  start(): void {
    this.port.watch({
      queued: () => void this.pump(),
      cancelled: (jobId) => void this.stop(jobId, "cancel"),
    });
    void this.pump();
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /** Fills free slots with waiting jobs. */
  async pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#accepting && this.#running.size + this.#launching < this.opts.maxConcurrent) {
        const job = await this.port.claim();
        if (!job) break;
        this.#launching++;
        void this.#launch(job).finally(() => {
          this.#launching--;
          void this.pump();
        });
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Stops a running job's process group; the job's events record what happened. */
  stop(jobId: string, reason: StopReason): Promise<void> {
    const r = this.#running.get(jobId);
    if (!r) return Promise.resolve();
    if (!r.stopping) {
      r.stopping = reason;
      r.stopped = stopGroup(r.child.pid, this.opts.graceSeconds * 1000, r.child.status);
    }
    return r.done;
  }

  /** Stops taking work and stops every running job, recording each as interrupted. */
  async shutdown(): Promise<void> {
    this.#accepting = false;
    await Promise.all([...this.#running.keys()].map((id) => this.stop(id, "shutdown")));
  }

  async #launch(job: JobState): Promise<void> {
    const type = this.opts.registry.get(job.model_type);
    if (!type) {
      return await this.port.fail(
        job.job_id,
        "spawn_failed",
        `model type ${job.model_type} is not registered any more`,
      );
    }
    const runtime = await this.opts.runtime(type.name);
    if (!runtime.runnable || !runtime.program) {
      return await this.port.fail(job.job_id, "runtime_missing", runtime.hint ?? "runtime missing");
    }
    const command = type.command.map((part) => part === PYTHON ? runtime.program! : part);
    await Deno.mkdir(this.opts.modelsDir, { recursive: true });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(command[0], {
        args: command.slice(1),
        env: this.#env(job, type.env),
        clearEnv: true,
        detached: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return await this.port.fail(job.job_id, "spawn_failed", `cannot start ${command[0]}: ${why}`);
    }
    let finish!: () => void;
    const r: Running = {
      job,
      child,
      stopping: null,
      stopped: null,
      timer: null,
      done: new Promise<void>((resolve) => finish = resolve),
    };
    this.#running.set(job.job_id, r);
    try {
      await this.#watch(r, command);
    } finally {
      this.#running.delete(job.job_id);
      finish();
    }
  }

  async #watch(r: Running, command: string[]): Promise<void> {
    const { job, child } = r;
    const collector = new OutputCollector(
      (events) => this.port.output(job.job_id, events),
      { modelsDir: this.opts.modelsDir },
    );
    const reading = Promise.all([
      collector.consume(child.stdout, "stdout"),
      collector.consume(child.stderr, "stderr"),
    ]);
    const { cancelled } = await this.port.started(job.job_id, {
      pid: child.pid,
      pgid: child.pid,
      start_ticks: readStartTicks(child.pid),
      worker_id: this.opts.workerId,
      command,
    }).catch((e) => {
      this.opts.log?.(`job ${job.job_id}: could not record its start (${e}); stopping it`);
      return { cancelled: true };
    });
    if (cancelled) void this.stop(job.job_id, "cancel");
    r.timer = setTimeout(() => void this.stop(job.job_id, "timeout"), job.timeout_seconds * 1000);
    const status = await child.status;
    clearTimeout(r.timer);
    // The leader is gone; anything it left in its group must not outlive the job or hold
    // its pipes open.
    if (!r.stopping && groupAlive(child.pid)) signalGroup(child.pid, "SIGKILL");
    await reading;
    await collector.close();
    const stop = r.stopped
      ? await r.stopped
      : { stopped_with: null, group_gone: !groupAlive(child.pid) };
    const artifact = await existing(collector.artifact ?? job.artifact_path);
    const report: ExitReport = {
      exit_code: status.signal ? null : status.code,
      signal: status.signal,
      artifact: r.stopping ? null : artifact,
      stderr_tail: collector.stderrTail.slice(-10).join("\n"),
      script_failure: collector.scriptFailure,
      stopped_for: r.stopping,
      stopped_with: stop.stopped_with,
      group_gone: stop.group_gone,
      timeout_seconds: job.timeout_seconds,
    };
    if (r.stopping || !(status.success && artifact)) {
      if (job.artifact_path) await removeArtifacts(job.artifact_path);
    }
    await this.port.exited(job.job_id, report).catch((e) => {
      this.opts.log?.(`job ${job.job_id}: could not record its exit (${e})`);
    });
  }

  #env(job: JobState, passThrough: string[]): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of [...BASE_ENV, ...passThrough]) {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    }
    return {
      ...env,
      TRAIN_JOB_ID: job.job_id,
      TRAIN_MODEL_TYPE: job.model_type,
      TRAIN_ARTIFACT_PATH: job.artifact_path ?? "",
      TRAIN_OUTPUT_DIR: this.opts.modelsDir,
      TRAIN_USE_CV: String(job.use_cv),
      TRAIN_RETRAIN: String(job.retrain),
      TRAIN_HYPERPARAMETERS: JSON.stringify(job.hyperparameters),
      PYTHONUNBUFFERED: "1",
    };
  }
}

async function existing(path: string | null): Promise<string | null> {
  if (!path) return null;
  try {
    return (await Deno.stat(path)).isFile ? path : null;
  } catch {
    return null;
  }
}
