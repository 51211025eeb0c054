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
  AUTOGROUPS,
  groupAlive,
  killJobProcesses,
  readStartTicks,
  setAutogroupNice,
  setNice,
  signalGroup,
  stopGroup,
  type StopSignal,
  waitGroupGone,
} from "./process.ts";
import type { WorkerPort } from "./worker_port.ts";
import type { FailureReason } from "./events.ts";
import type { Registry } from "../models/registry.ts";
import type { Runtime } from "../models/runtime.ts";
import type { TrainingSpec } from "../models/spec.ts";
import type { ArtifactStore } from "../artifacts/store.ts";
import { removeJobFiles, settleModel, settlesWithin, stderrTail } from "./job_end.ts";
import { type JobChild, type Leader, setsidProgram, spawnLeader } from "./spawn.ts";
import { type LogCapture, LogFolder } from "./log_capture.ts";
import { jobEnv, LaunchPlanner, type Prepared } from "./launch_plan.ts";

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

type StopReason = "cancel" | "timeout" | "shutdown" | "output_failed";

interface Running {
  job: JobState;
  child: JobChild;
  /** Its stdout's log file, when it writes to one. */
  capture: LogCapture | null;
  command: string[];
  /** What the job trains from; recorded with its model so that reuse can match it. */
  spec: TrainingSpec;
  collector: OutputCollector;
  /** Both output streams read to their end. */
  reading: Promise<unknown>;
  /** Its stdout's file read to its end (null when piped). */
  fileRead: Promise<void> | null;
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

export class Supervisor {
  #running = new Map<string, Running>();
  /** Jobs claimed ahead of a free slot (`prefetch`), oldest first; still waiting in the log. */
  #ready: JobState[] = [];
  /** Jobs not yet recorded as ended, including those whose slot was already freed. */
  #ending = new Set<Promise<void>>();
  #launching = 0;
  #accepting = true;
  #pumping = false;
  #again = false;

  readonly #plan: LaunchPlanner;
  readonly #logs: LogFolder | null;

  constructor(readonly port: WorkerPort, readonly opts: SupervisorOptions) {
    this.#plan = new LaunchPlanner(opts);
    this.#logs = opts.logDir ? this.#logFolder(opts.logDir) : null;
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
   */
  async pump(): Promise<void> {
    // A wake-up while pumping is remembered: the loop may be past a claim that found nothing.
    this.#again = true;
    if (this.#pumping) return;
    this.#pumping = true;
    const prefetch = this.opts.prefetch ?? 0;
    try {
      while (this.#accepting) {
        const free = this.opts.maxConcurrent - this.#running.size - this.#launching;
        this.#again = false;
        if (free > 0 && this.#ready.length > 0) {
          const jobs = this.#ready.splice(0, free);
          this.#launching += jobs.length;
          try {
            await this.#launch(jobs);
          } finally {
            this.#launching -= jobs.length;
          }
          continue;
        }
        const want = Math.max(free, 0) + prefetch - this.#ready.length;
        if (want <= 0) break;
        const claimed = await this.port.claim(want);
        this.#ready.push(...claimed);
        if (claimed.length === 0 && !this.#again) break;
      }
    } finally {
      this.#pumping = false;
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
        r.capture?.close();
        release();
        this.#ending.delete(r.done);
        r.finish();
      });
    }
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

  /** Spawns one job and sends its start without waiting; null when it could not spawn. */
  #spawn({ job, type, command, spec }: Prepared): Running | null {
    let leader: Leader;
    let capture: LogCapture | null = null;
    // Taken before the spawn: every file the job writes is newer (see removeArtifacts).
    const launchedAt = Date.now();
    try {
      capture = this.#capture(job.job_id);
      leader = spawnLeader(command, {
        env: jobEnv(job, type.env, spec, this.opts),
        clearEnv: true,
        stdin: "null",
        stdoutFd: capture?.fd,
        stderr: "piped",
      });
    } catch (e) {
      capture?.close();
      const why = e instanceof Error ? e.message : String(e);
      void this.port.fail(job.job_id, "spawn_failed", `cannot start ${command[0]}: ${why}`)
        .catch((e) => this.opts.log?.(`job ${job.job_id}: could not record that (${e})`));
      return null;
    }
    const { child } = leader;
    if (capture) capture.pause = (stop) => signalGroup(child.pid, stop ? "SIGSTOP" : "SIGCONT");
    const collector = new OutputCollector(
      (events) => this.port.output(job.job_id, events),
      { modelsDir: this.opts.modelsDir, onFailed: (why) => this.#outputFailed(job.job_id, why) },
    );
    const nice = this.opts.nice ?? 0;
    const log = (m: string) => this.opts.log?.(m);
    if (nice) setNice(child.pid, nice, log);
    let ended = false;
    if (nice && AUTOGROUPS) child.status.then(() => ended = true, () => {});
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
      // Its own autogroup exists once its setsid() ran (see AUTOGROUPS), which it usually has
      // by the time its start is recorded; a job that ended at once needs nothing. Polling each
      // job from its spawn instead cost the supervisor thread 0.15 ms a job (no-op jobs).
      else if (nice && AUTOGROUPS && !ended) {
        void leader.leading.then(() => setAutogroupNice(child.pid, nice, log));
      }
    });
    const fileRead = capture ? collector.consumeFile(capture, capture.ended) : null;
    let finish!: () => void;
    return {
      job,
      child,
      capture,
      command,
      collector,
      // A broken pipe must not keep the job from being recorded as ended.
      reading: Promise.all([
        fileRead ?? collector.consume(child.stdout!, "stdout"),
        collector.consume(child.stderr, "stderr"),
      ]).catch((e) => this.opts.log?.(`job ${job.job_id}: reading its output failed (${e})`)),
      fileRead,
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
    // Nothing of the job is left to write its stdout's file: all of it is read, however far
    // the reader is behind (the job never waited for it), and nothing written after this.
    r.capture?.end();
    await r.fileRead?.catch(() => {});
    // One that escaped even that can hold the pipes open forever; its output after the job
    // ended is not the job's.
    if (!await settlesWithin(r.reading, PIPE_DRAIN_MS)) {
      this.opts.log?.(`job ${job.job_id}: output pipes still open after exit; not waiting`);
    }
    await collector.close();
    r.capture?.close();
    const log = (m: string) => this.opts.log?.(`job ${job.job_id}: ${m}`);
    const model = await settleModel({
      modelsDir: this.opts.modelsDir,
      path: collector.artifact ?? job.artifact_path,
      stopped: r.stopping !== null,
      success: status.success,
      spec: r.spec,
      holdsLease: () => this.port.holds?.(job.job_id) !== false,
      artifacts: this.opts.artifacts,
      workerId: this.opts.workerId,
      log,
    });
    const report: ExitReport = {
      exit_code: status.signal ? null : status.code,
      signal: status.signal,
      ...model,
      stderr_tail: stderrTail(collector.stderrTail),
      script_failure: collector.scriptFailure,
      stopped_for: r.stopping,
      stopped_with: stop.stopped_with,
      group_gone: stop.group_gone && strays.gone,
      strays_killed: strays.killed,
      timeout_seconds: job.timeout_seconds,
      output_failure: collector.failure,
    };
    if (r.stopping || !(status.success && model.artifact) || model.upload_failure) {
      await removeJobFiles(this.opts.modelsDir, {
        paths: [job.artifact_path, collector.artifact],
        pid: child.pid,
        launchedAt: r.launchedAt,
      }, log);
    }
    const recorded = this.port.exited(job.job_id, report).catch((e) => {
      this.opts.log?.(`job ${job.job_id}: could not record its exit (${e})`);
    });
    release();
    await recorded;
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
}

const PIPE_DRAIN_MS = 2000;
