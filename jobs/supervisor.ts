/**
 * The local supervisor: runs waiting jobs as child processes, at most `maxConcurrent` at
 * once in submission order. Each job runs without a shell, in its own process group, with
 * an environment built from scratch. Cancels and time limits stop the whole group: SIGTERM,
 * then SIGKILL after the grace period.
 */
import type { ExitReport } from "./decide.ts";
import type { JobState } from "./state.ts";
import { OutputCollector } from "./output.ts";
import {
  groupAlive,
  killJobProcesses,
  readStartTicks,
  signalGroup,
  stopGroup,
  type StopSignal,
  waitGroupGone,
} from "./process.ts";
import type { WorkerPort } from "./worker_port.ts";
import type { FailureReason } from "./events.ts";
import { type ModelType, PYTHON, type Registry } from "../models/registry.ts";
import type { Runtime } from "../models/runtime.ts";
import { acceptArtifact, removeArtifacts } from "../models/artifacts.ts";
import { launchSpec, recordSpecSync, specEnv, type TrainingSpec } from "../models/spec.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import { storeModel } from "../models/store_model.ts";
import { type Leader, spawnLeader } from "./spawn.ts";

export interface SupervisorOptions {
  registry: Registry;
  /** The runtime of a model type, checked again when it was missing. */
  runtime(type: string): Promise<Runtime>;
  modelsDir: string;
  maxConcurrent: number;
  graceSeconds: number;
  workerId: string;
  /**
   * Added to every job's environment (below the TRAIN_* variables, which it cannot replace).
   * The remote worker sets TRAINER_WORKER_NAME so that its next run can find what it left.
   */
  env?: Record<string, string>;
  /** Where finished models are kept (ARTIFACT_STORE); unset records no stored artifact. */
  artifacts?: ArtifactStore;
  log?: (message: string) => void;
}

/** A claimed job that can be spawned: its type, command line and training spec. */
interface Prepared {
  job: JobState;
  type: ModelType;
  command: string[];
  spec: TrainingSpec;
}

type StopReason = "cancel" | "timeout" | "shutdown" | "output_failed";

interface Running {
  job: JobState;
  child: Deno.ChildProcess;
  command: string[];
  /** What the job trains from; recorded with its model so that reuse can match it. */
  spec: TrainingSpec;
  collector: OutputCollector;
  /** Both output streams read to their end. */
  reading: Promise<unknown>;
  /** Settles once the start is recorded (or recorded as failed). */
  recorded: Promise<void>;
  /** Its `leading` settles once it leads its own group, so that the group can be signalled. */
  leader: Leader;
  launchedAt: number;
  /** The leader's kernel start ticks: the job's processes all started since. */
  startTicks: number | null;
  stopping: StopReason | null;
  stopped: Promise<{ stopped_with: StopSignal | null; group_gone: boolean }> | null;
  timer: ReturnType<typeof setTimeout> | null;
  done: Promise<void>;
  finish: () => void;
}

/** Variables of the server's own environment every job gets. */
const BASE_ENV = ["PATH", "HOME", "LANG"];

export class Supervisor {
  #running = new Map<string, Running>();
  /** Jobs not yet recorded as ended, including those whose slot was already freed. */
  #ending = new Set<Promise<void>>();
  #launching = 0;
  #runtimes = new Map<string, { runtime: Runtime; at: number }>();
  #accepting = true;
  #pumping = false;
  #again = false;

  constructor(readonly port: WorkerPort, readonly opts: SupervisorOptions) {}

  /** Starts taking work. */
  start(): void {
    this.port.watch({
      queued: () => void this.pump(),
      cancelled: (jobId) => void this.stop(jobId, "cancel"),
    });
    void this.pump();
  }

  /**
   * Fills free slots with waiting jobs. All free slots are claimed at once and spawned
   * together, and their `started` events are sent in claim order without waiting for each
   * other, so the store commits them in one transaction, in submission order. The next
   * claim does not wait for those commits: each job waits for its own before its exit is
   * recorded.
   */
  async pump(): Promise<void> {
    // A wake-up while pumping is remembered: the loop may be past a claim that found nothing.
    this.#again = true;
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        const free = this.opts.maxConcurrent - this.#running.size - this.#launching;
        if (!this.#accepting || free <= 0) break;
        this.#again = false;
        const jobs = await this.port.claim(free);
        if (jobs.length === 0) {
          if (this.#again) continue;
          break;
        }
        this.#launching += jobs.length;
        try {
          await this.#launch(jobs);
        } finally {
          this.#launching -= jobs.length;
        }
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
      r.stopped = r.leader.leading.then(() =>
        stopGroup(r.child.pid, this.opts.graceSeconds * 1000)
      );
    }
    return r.done;
  }

  /** Stops taking work and stops every running job, recording each as interrupted. */
  async shutdown(): Promise<void> {
    this.#accepting = false;
    await Promise.all([...this.#running.keys()].map((id) => this.stop(id, "shutdown")));
    // Jobs whose process is gone but whose end is still on its way to the log.
    await Promise.all(this.#ending);
  }

  /** Spawns claimed jobs, in order, and sends their starts; records those that cannot start. */
  async #launch(jobs: JobState[]): Promise<void> {
    const failed = (job: JobState, reason: FailureReason, why: string) => {
      // Off the queue and not running: unless recorded as failed, it would wait forever.
      this.opts.log?.(`job ${job.job_id}: launch failed: ${why}`);
      void this.port.fail(job.job_id, reason, why)
        .catch((e) => this.opts.log?.(`job ${job.job_id}: could not record that (${e})`));
    };
    let ready: Prepared[];
    try {
      ready = await this.#prepare(jobs, failed);
      // Sync: an async mkdir waited about a millisecond a batch for a thread-pool slot.
      try {
        Deno.mkdirSync(this.opts.modelsDir, { recursive: true });
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        throw new Error(`MODELS_DIR ${this.opts.modelsDir} cannot be created (${why})`);
      }
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      for (const job of jobs) failed(job, "spawn_failed", `the job could not start: ${why}`);
      return;
    }
    // Checked right before spawning, with no await until every job is in #running:
    // shutdown() stops every job in #running, so none may be spawned after it looked.
    if (!this.#accepting) return;
    for (const prepared of ready) {
      const r = this.#spawn(prepared);
      const { job } = prepared;
      if (!r) continue;
      this.#running.set(job.job_id, r);
      this.#ending.add(r.done);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.#running.delete(job.job_id);
        void this.pump();
      };
      void this.#supervise(r, release).finally(() => {
        release();
        this.#ending.delete(r.done);
        r.finish();
      });
    }
  }

  /** The command of each job whose type and runtime are there; the others are failed. */
  async #prepare(
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

  /** Spawns one job and sends its start without waiting; null when it could not spawn. */
  #spawn({ job, type, command, spec }: Prepared): Running | null {
    let leader: Leader;
    // Taken before the spawn: every file the job writes is newer (see removeArtifacts).
    const launchedAt = Date.now();
    try {
      leader = spawnLeader(command, {
        env: { ...this.#env(job, type.env), ...specEnv(spec) },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      void this.port.fail(job.job_id, "spawn_failed", `cannot start ${command[0]}: ${why}`)
        .catch((e) => this.opts.log?.(`job ${job.job_id}: could not record that (${e})`));
      return null;
    }
    const { child } = leader;
    const collector = new OutputCollector(
      (events) => this.port.output(job.job_id, events),
      { modelsDir: this.opts.modelsDir, onFailed: (why) => this.#outputFailed(job.job_id, why) },
    );
    const startTicks = readStartTicks(child.pid);
    const recorded = this.port.started(job.job_id, {
      pid: child.pid,
      pgid: child.pid,
      start_ticks: startTicks,
      worker_id: this.opts.workerId,
      command,
    }).catch(async (e) => {
      this.opts.log?.(`job ${job.job_id}: could not record its start (${e}); stopping it`);
      // Off the queue and not recorded as running: fail it, or it would wait forever.
      await this.port.fail(job.job_id, "spawn_failed", `could not record the start: ${e}`)
        .catch(() => {});
      return { cancelled: true };
    }).then(({ cancelled }) => {
      if (cancelled) void this.stop(job.job_id, "cancel");
    });
    let finish!: () => void;
    return {
      job,
      child,
      command,
      collector,
      // A broken pipe must not keep the job from being recorded as ended.
      reading: Promise.all([
        collector.consume(child.stdout, "stdout"),
        collector.consume(child.stderr, "stderr"),
      ]).catch((e) => this.opts.log?.(`job ${job.job_id}: reading its output failed (${e})`)),
      recorded,
      leader,
      spec,
      launchedAt,
      startTicks,
      stopping: null,
      stopped: null,
      timer: null,
      done: new Promise<void>((resolve) => finish = resolve),
      finish: () => finish(),
    };
  }

  /**
   * Waits for a started job's process, enforcing its time limit, and records its end.
   * `release` frees the slot as soon as the end is sent: the process and its strays are
   * gone, and the store commits in call order, so the end is in the log no later than the
   * start of the job that takes the slot (the API never shows more than the limit running).
   */
  async #supervise(r: Running, release: () => void): Promise<void> {
    const { job, child, collector } = r;
    r.timer = setTimeout(() => void this.stop(job.job_id, "timeout"), job.timeout_seconds * 1000);
    const status = await child.status;
    clearTimeout(r.timer);
    // Its end follows its start in the log, and a cancel that came with the start applies.
    await r.recorded;
    // The leader is gone; anything it left in its group must not outlive the job or hold
    // its pipes open. A stop in progress keeps its grace period.
    let stop: { stopped_with: StopSignal | null; group_gone: boolean };
    if (r.stopped) stop = await r.stopped;
    else if (groupAlive(child.pid)) {
      signalGroup(child.pid, "SIGKILL");
      stop = { stopped_with: null, group_gone: await waitGroupGone(child.pid, 1000) };
    } else stop = { stopped_with: null, group_gone: true };
    // A process that left the group (setsid) still carries the job's id: it dies with the job.
    const strays = await killJobProcesses(job.job_id, 1000, { since: r.startTicks });
    if (strays.killed.length) {
      this.opts.log?.(`job ${job.job_id}: killed escaped process(es) ${strays.killed.join(", ")}`);
    }
    // One that escaped even that can hold the pipes open forever; its output after the job
    // ended is not the job's.
    if (!await settlesWithin(r.reading, PIPE_DRAIN_MS)) {
      this.opts.log?.(`job ${job.job_id}: output pipes still open after exit; not waiting`);
    }
    await collector.close();
    const path = collector.artifact ?? job.artifact_path;
    const produced = r.stopping || !path ? null : await acceptArtifact(this.opts.modelsDir, path);
    const artifact = produced && "path" in produced ? produced.path : null;
    const report: ExitReport = {
      exit_code: status.signal ? null : status.code,
      signal: status.signal,
      artifact,
      artifact_refused: produced && "refused" in produced ? produced.refused : null,
      stderr_tail: stderrTail(collector.stderrTail),
      script_failure: collector.scriptFailure,
      stopped_for: r.stopping,
      stopped_with: stop.stopped_with,
      group_gone: stop.group_gone && strays.gone,
      strays_killed: strays.killed,
      timeout_seconds: job.timeout_seconds,
      output_failure: collector.failure,
    };
    if (!r.stopping && status.success && artifact) {
      let metadata: Record<string, unknown> | null | undefined;
      try {
        metadata = recordSpecSync(artifact, r.spec).metadata;
      } catch (e) {
        this.opts.log?.(`job ${job.job_id}: could not record its training spec (${e})`);
      }
      if (this.port.holds?.(job.job_id) === false) {
        // Its lease went to another attempt: storing now could replace that attempt's model.
        report.upload_failure = "the job's lease was lost before its model was stored";
      } else if (this.opts.artifacts) {
        const stored = await storeModel(this.opts.artifacts, artifact, {
          workerId: this.opts.workerId,
          metadata,
          log: (m) => this.opts.log?.(`job ${job.job_id}: ${m}`),
        });
        if ("record" in stored) report.artifact_record = stored.record;
        else report.upload_failure = stored.failure;
      }
    }
    if (r.stopping || !(status.success && artifact) || report.upload_failure) {
      await this.#removeFiles(r);
    }
    const recorded = this.port.exited(job.job_id, report).catch((e) => {
      this.opts.log?.(`job ${job.job_id}: could not record its exit (${e})`);
    });
    release();
    await recorded;
  }

  /** Removes what a job that did not complete wrote: its exact files, nothing else. */
  async #removeFiles(r: Running): Promise<void> {
    const { job, collector } = r;
    const log = (m: string) => this.opts.log?.(`job ${job.job_id}: ${m}`);
    const paths = new Set([job.artifact_path, collector.artifact].filter((p) => p !== null));
    for (const path of paths) {
      await removeArtifacts(this.opts.modelsDir, path, {
        pid: r.child.pid,
        writtenSince: r.launchedAt,
        log,
      }).catch((e) => log(`could not remove its files (${e})`));
    }
  }

  /**
   * The job's output cannot be stored: stop its group rather than let it run on with its log
   * silently lost. The exit report carries the reason, so the job fails with it and the
   * process's end is still recorded truthfully.
   */
  #outputFailed(jobId: string, why: string): void {
    this.opts.log?.(`job ${jobId}: ${why}; stopping it`);
    void this.stop(jobId, "output_failed");
  }

  #env(job: JobState, passThrough: string[]): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of [...BASE_ENV, ...passThrough]) {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    }
    return {
      ...env,
      ...this.opts.env,
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

const PIPE_DRAIN_MS = 2000;
const RUNTIME_REUSE_MS = 1000;

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
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
