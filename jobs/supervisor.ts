/**
 * The local supervisor: runs waiting jobs as child processes, at most `maxConcurrent` at
 * once in submission order. Each job runs without a shell, in its own process group, with
 * an environment built from scratch. Cancels and time limits stop the whole group: SIGTERM,
 * then SIGKILL after the grace period.
 */
import type { JobState } from "./state.ts";
import { signalGroup, stopGroup } from "./process.ts";
import type { WorkerPort } from "./worker_port.ts";
import type { FailureReason } from "./events.ts";
import type { Registry } from "../models/registry.ts";
import type { Runtime } from "../models/runtime.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import { setsidProgram } from "./spawn.ts";
import { type LogCapture, LogFolder } from "./log_capture.ts";
import { LaunchPlanner, type Prepared } from "./launch_plan.ts";
import {
  type RunContext,
  type Running,
  type Spawned,
  spawnProcess,
  startJob,
  type StopReason,
  superviseJob,
} from "./job_run.ts";

export interface SupervisorOptions {
  registry: Registry;
  /** The runtime of a model type, checked again when it was missing. */
  runtime(type: string): Promise<Runtime>;
  modelsDir: string;
  maxConcurrent: number;
  graceSeconds: number;
  /**
   * The jobs' niceness (JOB_NICE; 0 leaves them at the server's own priority). Training that
   * keeps every core busy then yields to the API and to the supervisor reading its output
   * (whose thread runs at half of it: see supervisor_thread.ts).
   */
  nice?: number;
  workerId: string;
  /**
   * Added to every job's environment (below the TRAIN_* variables, which it cannot replace).
   * The remote worker sets TRAINER_WORKER_NAME so that its next run can find what it left.
   */
  env?: Record<string, string>;
  /**
   * Jobs claimed ahead while every slot is busy (default 0). Only where a claim owns nothing
   * durable: the local port's claims are in memory, and a job claimed ahead is still waiting
   * in the log, so a restart finds it there; a remote lease would expire unheartbeated.
   */
  prefetch?: number;
  /**
   * The log folder of the local database (LOG_FILES): jobs' stdout is written to files there,
   * and stored log events hold ranges of them. Unset: stdout is piped and stored as text.
   */
  logDir?: string;
  /** Where finished models are kept (ARTIFACT_STORE); unset records no stored artifact. */
  artifacts?: ArtifactStore;
  log?: (message: string) => void;
}

export class Supervisor {
  #running = new Map<string, Running>();
  /** Jobs claimed ahead of a free slot (`prefetch`), oldest first; still waiting in the log. */
  #ready: JobState[] = [];
  /** Jobs not yet recorded as ended, including those whose slot was already freed. */
  #ending = new Set<Promise<void>>();
  #launching = 0;
  /** Batches being spawned, not yet in #running. */
  #spawning = new Set<Promise<void>>();
  #accepting = true;
  #launchLoop = false;
  #claiming = false;
  #again = false;

  readonly #plan: LaunchPlanner;
  readonly #logs: LogFolder | null;
  readonly #run: RunContext;

  constructor(readonly port: WorkerPort, readonly opts: SupervisorOptions) {
    this.#plan = new LaunchPlanner(opts);
    this.#logs = opts.logDir ? this.#logFolder(opts.logDir) : null;
    this.#run = {
      port,
      opts,
      capture: (jobId) => this.#capture(jobId),
      stop: (jobId, reason) => this.stop(jobId, reason),
    };
  }

  /** Starts taking work. */
  start(): void {
    // Looked up now (it may run busybox once), not on the first job's launch.
    setsidProgram();
    this.port.watch({
      queued: () => void this.pump(),
      cancelled: (jobId) => void this.stop(jobId, "cancel"),
    });
    void this.pump();
  }

  /**
   * Fills free slots with waiting jobs. All free slots are filled at once and spawned
   * together, and their `started` events are sent in claim order without waiting for each
   * other, so the store commits them in one transaction, in submission order. The next
   * claim does not wait for those commits: each job waits for its own before its exit is
   * recorded. With `prefetch`, that many more jobs are claimed ahead while every slot is
   * busy, so that a slot that frees starts its next job without a round trip for the claim.
   *
   * Launching and claiming are two loops, one batch in flight each: a slot that frees while
   * a claim is on its way to the store is filled from the jobs claimed ahead at once. When
   * one loop waited for the other, a freed slot waited 5-7 ms on average for its next job
   * (16 slots of no-op jobs; the claim's round trip waits while the store commits).
   * Launches stay one batch at a time, so starts are still sent in claim order.
   */
  pump(): Promise<void> {
    return Promise.all([this.#launchReady(), this.#claimAhead()]).then(() => {});
  }

  /** Launches jobs claimed ahead into free slots, one batch at a time, oldest first. */
  async #launchReady(): Promise<void> {
    // One in progress looks again after each batch.
    if (this.#launchLoop) return;
    this.#launchLoop = true;
    try {
      while (this.#accepting) {
        const free = this.opts.maxConcurrent - this.#running.size - this.#launching;
        if (free <= 0 || this.#ready.length === 0) break;
        const jobs = this.#ready.splice(0, free);
        this.#launching += jobs.length;
        try {
          await this.#launch(jobs);
        } finally {
          this.#launching -= jobs.length;
        }
        void this.#claimAhead();
      }
    } finally {
      this.#launchLoop = false;
    }
  }

  /** Claims jobs for free slots and `prefetch` more, one claim at a time. */
  async #claimAhead(): Promise<void> {
    // A wake-up while claiming is remembered: the claim on its way may have found nothing.
    this.#again = true;
    if (this.#claiming) return;
    this.#claiming = true;
    try {
      while (this.#accepting) {
        this.#again = false;
        const free = this.opts.maxConcurrent - this.#running.size - this.#launching;
        const want = Math.max(free, 0) + (this.opts.prefetch ?? 0) - this.#ready.length;
        if (want <= 0) break;
        const claimed = await this.port.claim(want);
        this.#ready.push(...claimed);
        if (claimed.length) void this.#launchReady();
        else if (!this.#again) break;
      }
    } finally {
      this.#claiming = false;
    }
  }

  /** Stops a running job's process group; the job's events record what happened. */
  stop(jobId: string, reason: StopReason): Promise<void> {
    // A job claimed ahead and cancelled before its slot came: it is not started at all.
    const ahead = this.#ready.findIndex((j) => j.job_id === jobId);
    if (ahead >= 0) this.#ready.splice(ahead, 1);
    const r = this.#running.get(jobId);
    if (!r) return Promise.resolve();
    if (!r.stopping) {
      r.stopping = reason;
      // A job stopped for its output's sake must be able to act on its signals.
      r.capture?.release();
      r.stopped = r.leader.leading.then(() =>
        stopGroup(r.child.pid, this.opts.graceSeconds * 1000)
      );
    }
    return r.done;
  }

  /** Stops taking work and stops every running job, recording each as interrupted. */
  async shutdown(): Promise<void> {
    this.#accepting = false;
    await Promise.all(this.#spawning);
    await Promise.all([...this.#running.keys()].map((id) => this.stop(id, "shutdown")));
    // Jobs whose process is gone but whose end is still on its way to the log.
    await Promise.all(this.#ending);
    await this.#logs?.close();
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
      ready = await this.#plan.prepare(jobs, failed);
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
    // Checked right before spawning; shutdown() waits for the spawns in progress to be in
    // #running before it stops every job there, so none is spawned after it looked.
    if (!this.#accepting) return;
    // The batch spawns together (each spawn waits on the pool for its child's exec), and the
    // starts are sent once all are spawned, in claim order.
    const spawning = Promise.all(ready.map((p) => spawnProcess(this.#run, p)))
      .then((spawned) => this.#start(spawned));
    this.#spawning.add(spawning);
    try {
      await spawning;
    } finally {
      this.#spawning.delete(spawning);
    }
  }

  /** Sends spawned jobs' starts, in order, and supervises each until its end is recorded. */
  #start(spawned: (Spawned | null)[]): void {
    for (const s of spawned) {
      if (!s) continue;
      let r: Running;
      try {
        r = startJob(this.#run, s);
      } catch (e) {
        // Never expected; the rest of the batch still starts, and this one does not run on
        // unsupervised: its group is killed and the job recorded as failed.
        this.#notStarted(s, e);
        continue;
      }
      const { job } = r;
      this.#running.set(job.job_id, r);
      this.#ending.add(r.done);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.#running.delete(job.job_id);
        void this.pump();
      };
      void superviseJob(this.#run, r, release).finally(() => {
        r.capture?.close();
        release();
        this.#ending.delete(r.done);
        r.finish();
      });
    }
  }

  /** A spawned job whose start could not be sent: killed, and failed in the log. */
  #notStarted({ prepared: { job }, leader, capture }: Spawned, e: unknown): void {
    const why = `could not start supervising it: ${e instanceof Error ? e.message : e}`;
    this.opts.log?.(`job ${job.job_id}: ${why}`);
    signalGroup(leader.child.pid, "SIGKILL");
    capture?.close();
    void this.port.fail(job.job_id, "spawn_failed", why)
      .catch((e) => this.opts.log?.(`job ${job.job_id}: could not record that (${e})`));
  }

  /** The log folder, with as many spare spools as jobs that can start at once (up to 16). */
  #logFolder(dir: string): LogFolder | null {
    try {
      return new LogFolder(dir, Math.min(this.opts.maxConcurrent, 16));
    } catch (e) {
      this.opts.log?.(`log folder ${dir} cannot be used (${e}); jobs' stdout is piped`);
      return null;
    }
  }

  /** A log file for the job's stdout, when there is a log folder; else it is piped. */
  #capture(jobId: string): LogCapture | null {
    if (!this.#logs || !setsidProgram()) return null;
    try {
      return this.#logs.open(jobId);
    } catch (e) {
      this.opts.log?.(`job ${jobId}: no log file (${e}); its stdout is piped`);
      return null;
    }
  }
}
