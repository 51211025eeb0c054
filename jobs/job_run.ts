/**
 * One job's run on the local supervisor: spawn it, send its start, read its output, wait
 * for its end under its time limit, kill what it left behind, settle its model and record
 * its end. The supervisor (supervisor.ts) decides which jobs run and when they stop.
 */
import type { ExitReport } from "./decide.ts";
import type { JobState } from "./state.ts";
import { OutputCollector } from "./output.ts";
import {
  AUTOGROUPS,
  groupAlive,
  killJobProcesses,
  setAutogroupNice,
  setNice,
  signalGroup,
  type StopSignal,
  waitGroupGone,
} from "./process.ts";
import type { WorkerPort } from "./worker_port.ts";
import type { TrainingSpec } from "../models/spec.ts";
import { removeJobFiles, settleModel, settlesWithin, stderrTail } from "./job_end.ts";
import { type JobChild, type Leader, spawnLeader } from "./spawn.ts";
import type { LogCapture } from "./log_capture.ts";
import { jobEnv, type Prepared } from "./launch_plan.ts";
import type { SupervisorOptions } from "./supervisor.ts";

/** What a job's run needs from its supervisor. */
export interface RunContext {
  port: WorkerPort;
  opts: SupervisorOptions;
  /** A log file for the job's stdout; null: it is piped. */
  capture(jobId: string): LogCapture | null;
  /** Stops the job's group; settles once its end is recorded. */
  stop(jobId: string, reason: StopReason): Promise<void>;
}

export type StopReason = "cancel" | "timeout" | "shutdown" | "output_failed";

export interface Running {
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

/** A job's process, spawned, whose start is not sent yet. */
export interface Spawned {
  prepared: Prepared;
  leader: Leader;
  capture: LogCapture | null;
  launchedAt: number;
}

/** Spawns one job's process; null when it could not spawn (recorded as failed). */
export async function spawnProcess(ctx: RunContext, prepared: Prepared): Promise<Spawned | null> {
  const { port, opts } = ctx;
  const { job, type, command, spec } = prepared;
  let leader: Leader;
  let capture: LogCapture | null = null;
  // Taken before the spawn: every file the job writes is newer (see removeArtifacts).
  const launchedAt = Date.now();
  try {
    capture = ctx.capture(job.job_id);
    leader = await spawnLeader(command, {
      env: jobEnv(job, type.env, spec, opts),
      clearEnv: true,
      stdin: "null",
      stdoutFd: capture?.fd,
      stdoutPath: capture?.spoolPath,
      stderr: "piped",
    });
  } catch (e) {
    capture?.close();
    const why = e instanceof Error ? e.message : String(e);
    void port.fail(job.job_id, "spawn_failed", `cannot start ${command[0]}: ${why}`)
      .catch((e) => opts.log?.(`job ${job.job_id}: could not record that (${e})`));
    return null;
  }
  const { child } = leader;
  const nice = opts.nice ?? 0;
  if (nice) setNice(child.pid, nice, (m) => opts.log?.(m));
  return { prepared, leader, capture, launchedAt };
}

/** Sends a spawned job's start without waiting, and starts reading its output. */
export function startJob(ctx: RunContext, spawned: Spawned): Running {
  const { port, opts } = ctx;
  const { prepared: { job, command, spec }, leader, capture, launchedAt } = spawned;
  const { child } = leader;
  if (capture) capture.pause = (stop) => signalGroup(child.pid, stop ? "SIGSTOP" : "SIGCONT");
  const collector = new OutputCollector(
    (events) => port.output(job.job_id, events),
    { modelsDir: opts.modelsDir, onFailed: (why) => outputFailed(ctx, job.job_id, why) },
  );
  const nice = opts.nice ?? 0;
  const log = (m: string) => opts.log?.(m);
  // Settled by the time its start is recorded, if the job ended already (a round trip later).
  let ended = false;
  if (nice && AUTOGROUPS) child.status.then(() => ended = true, () => {});
  const { startTicks } = child;
  const recorded = port.started(job.job_id, {
    pid: child.pid,
    pgid: child.pid,
    start_ticks: startTicks,
    worker_id: opts.workerId,
    command,
  }).catch(async (e) => {
    opts.log?.(`job ${job.job_id}: could not record its start (${e}); stopping it`);
    // Off the queue and not recorded as running: fail it, or it would wait forever.
    await port.fail(job.job_id, "spawn_failed", `could not record the start: ${e}`)
      .catch(() => {});
    return { cancelled: true };
  }).then(({ cancelled }) => {
    if (cancelled) void ctx.stop(job.job_id, "cancel");
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
    ]).catch((e) => opts.log?.(`job ${job.job_id}: reading its output failed (${e})`)),
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
export async function superviseJob(
  ctx: RunContext,
  r: Running,
  release: () => void,
): Promise<void> {
  const { port, opts } = ctx;
  const { job, child, collector } = r;
  r.timer = setTimeout(() => void ctx.stop(job.job_id, "timeout"), job.timeout_seconds * 1000);
  const status = await child.status;
  clearTimeout(r.timer);
  // The leader is gone; anything it left in its group must not outlive the job or hold
  // its pipes open. A stop in progress keeps its grace period. None of this waits for the
  // start's commit: a no-op job's start was still on its way to the disk when it ended, and
  // waiting for it first kept its slot about 5 ms longer (16 slots, `true` jobs).
  let stop: { stopped_with: StopSignal | null; group_gone: boolean };
  if (r.stopped) stop = await r.stopped;
  else if (groupAlive(child.pid)) {
    signalGroup(child.pid, "SIGKILL");
    stop = { stopped_with: null, group_gone: await waitGroupGone(child.pid, 1000) };
  } else stop = { stopped_with: null, group_gone: true };
  // A process that left the group (setsid) still carries the job's id: it dies with the job.
  const strays = await killJobProcesses(job.job_id, 1000, { since: r.startTicks });
  if (strays.killed.length) {
    opts.log?.(`job ${job.job_id}: killed escaped process(es) ${strays.killed.join(", ")}`);
  }
  // Nothing of the job is left to write its stdout's file: all of it is read, however far
  // the reader is behind (the job never waited for it), and nothing written after this.
  r.capture?.end();
  await r.fileRead?.catch(() => {});
  // One that escaped even that can hold the pipes open forever; its output after the job
  // ended is not the job's.
  if (!await settlesWithin(r.reading, PIPE_DRAIN_MS)) {
    opts.log?.(`job ${job.job_id}: output pipes still open after exit; not waiting`);
  }
  await collector.close();
  // A spool the job opened itself is emptied and kept for the next job, unless a process
  // still has it open (see LogCapture.close).
  r.capture?.close(r.leader.ownStdout);
  // Its end follows its start in the log, and a cancel that came with the start applies:
  // it stopped (or found gone) the group, and the end says it was stopped.
  await r.recorded;
  if (r.stopped) stop = await r.stopped;
  const log = (m: string) => opts.log?.(`job ${job.job_id}: ${m}`);
  const model = await settleModel({
    modelsDir: opts.modelsDir,
    path: collector.artifact ?? job.artifact_path,
    stopped: r.stopping !== null,
    success: status.success,
    spec: r.spec,
    holdsLease: () => port.holds?.(job.job_id) !== false,
    artifacts: opts.artifacts,
    workerId: opts.workerId,
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
    await removeJobFiles(opts.modelsDir, {
      paths: [job.artifact_path, collector.artifact],
      pid: child.pid,
      launchedAt: r.launchedAt,
    }, log);
  }
  const recorded = port.exited(job.job_id, report).catch((e) => {
    opts.log?.(`job ${job.job_id}: could not record its exit (${e})`);
  });
  release();
  await recorded;
}

/**
 * The job's output cannot be stored: stop its group rather than let it run on with its log
 * silently lost. The exit report carries the reason, so the job fails with it and the
 * process's end is still recorded truthfully.
 */
function outputFailed(ctx: RunContext, jobId: string, why: string): void {
  ctx.opts.log?.(`job ${jobId}: ${why}; stopping it`);
  void ctx.stop(jobId, "output_failed");
}

const PIPE_DRAIN_MS = 2000;
