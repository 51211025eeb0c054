/**
 * The stray sweep at a job's end: every live process still carrying the job's
 * `TRAIN_JOB_ID` (a daemon that left its group with setsid, say) is killed.
 *
 * It runs at every job's end, on the slot's path, and was the largest cost of a no-op job
 * on the supervisor thread: each pass read the environment of every process on the machine
 * (about 20 µs a file through Deno's sync ops, 140 processes: ~3 ms). Two things make a pass
 * cheap without weakening it:
 * - A process carrying the job's id descends from the job's leader, so it started (kernel
 *   start ticks) no earlier than the leader did; older processes cannot be the job's and
 *   their environment is not read. Callers that know no start time get the full scan.
 * - The start ticks of each pid are remembered between passes, so a pass reads only
 *   `readdir(/proc)` plus the stat of pids it has not seen. A pid names the same process until
 *   the kernel hands it out again. Its cyclic counter moved from the previous pass's
 *   `ns_last_pid` to this one's: only pids in between can have been handed out since. Those are
 *   read again; a pid above that range is an older process from before the counter last
 *   wrapped, and it was once remembered with stale ticks after it died and its pid was given
 *   to a new process (a fresh-clone CI run missed a job's process that way, pid_max 32,768).
 *   A pass trusts its memory only while `ns_last_pid` has not gone back and the previous pass
 *   is less than a second old (a full wrap takes pid_max forks).
 *
 * A process in the middle of an exec reads an empty environment for a moment, so a pass could
 * miss a stray that execs just then and report the job's processes gone. A pass reads such
 * processes again, and only those (`recheckEmpty`).
 *
 * The leaders of jobs still running are not read at all (`trackLeader`): each was started with
 * its own job's id, and until it is reaped its pid cannot name another process. With 16 no-op
 * jobs at a time they were most of what a pass read, and often in the middle of their exec, so
 * a pass waited for rechecks: a job's sweep took 9-10 ms from request to answer.
 */

import { emptyEnviron, live, proc, type ProcFs } from "./procfs.ts";

export interface SweepOptions {
  /**
   * The kernel start ticks of the job's leader (its `start_ticks`); only processes started
   * since can carry the job's id. Null or absent: every process is checked.
   */
  since?: number | null;
}

/**
 * Kills every live process still carrying `jobId` in its environment and waits up to `ms` for
 * them to die. SIGKILL at once: the group had its grace already. Scanned again while waiting,
 * so a process that forked between the scan and the kill is caught too.
 *
 * Jobs that end together share one pass over /proc: a request joins the next pass, and each
 * job is answered only once a pass started after its request found none of its processes.
 */
export function killJobProcesses(
  jobId: string,
  ms = 1000,
  opts: SweepOptions = {},
): Promise<{ killed: number[]; gone: boolean }> {
  return new Promise((resolve) => {
    const waiting = sweeps.get(jobId) ?? [];
    waiting.push({
      killed: new Set(),
      deadline: Date.now() + ms,
      since: opts.since ?? null,
      resolve,
    });
    sweeps.set(jobId, waiting);
    sweeping ??= sweep();
  });
}

interface Sweep {
  killed: Set<number>;
  deadline: number;
  since: number | null;
  resolve(result: { killed: number[]; gone: boolean }): void;
}

const sweeps = new Map<string, Sweep[]>();
/** Leaders of running jobs, not yet reaped; see the header. */
const leaders = new Set<number>();

/**
 * Leaves the leader `pid` out of every pass until `status` settles (it was reaped). Its job's
 * own sweep comes after that.
 */
export function trackLeader(pid: number, status: Promise<unknown>): void {
  leaders.add(pid);
  const reaped = () => leaders.delete(pid);
  status.then(reaped, reaped);
}
/**
 * Leaders being spawned on the pool: each is listed by /proc before its spawn has returned to
 * trackLeader, and reading it then (often mid-exec, its environment unreadable and the read
 * throwing) was most of what a pass read with 16 no-op jobs at a time. A pass waits for the
 * spawns in progress first, well under a millisecond.
 */
const spawning = new Set<Promise<unknown>>();

/** Registers a leader's spawn in progress; `spawned` settles once its leader is tracked. */
export function spawningLeader(spawned: Promise<unknown>): void {
  spawning.add(spawned);
  const done = () => spawning.delete(spawned);
  spawned.then(done, done);
}
let sweeping: Promise<void> | null = null;

async function sweep(): Promise<void> {
  try {
    while (sweeps.size) await pass();
  } finally {
    // Cleared here, not in a `finally()` callback a microtask later: a caller answered by the
    // last pass that asks again at once would find `sweeping` still set, and no pass would run.
    sweeping = null;
  }
}

/** One pass: answers the requests made before it started, and kills what it found alive. */
async function pass(): Promise<void> {
  // One macrotask lets the jobs ending together join this pass.
  await new Promise((r) => setTimeout(r, 0));
  if (spawning.size) await Promise.allSettled([...spawning]);
  // The pass answers the requests made before it started; later ones wait for the next.
  const batch = [...sweeps].map(([id, waiting]) => [id, [...waiting]] as const);
  const ids = new Set(sweeps.keys());
  const { found: byJob, unsure } = carriers(ids, oldestStart());
  await recheckEmpty(unsure, ids, byJob);
  const now = Date.now();
  let killing = false;
  for (const [id, waiting] of batch) {
    const alive = byJob.get(id) ?? [];
    const answered = new Set(waiting.filter((w) => !(alive.length && now < w.deadline)));
    for (const w of answered) w.resolve({ killed: [...w.killed], gone: alive.length === 0 });
    const left = sweeps.get(id)!.filter((w) => !answered.has(w));
    for (const pid of alive) {
      if (!proc.kill(pid)) continue; // gone already
      for (const w of left) w.killed.add(pid);
    }
    if (left.length) sweeps.set(id, left);
    else sweeps.delete(id);
    // What was just killed needs a moment to die before a pass looks again.
    if (alive.length && left.length) killing = true;
  }
  if (killing) await new Promise((r) => setTimeout(r, 20));
}

/** The earliest start of the jobs in this pass; null when one of them has none. */
function oldestStart(): number | null {
  let oldest = Infinity;
  for (const waiting of sweeps.values()) {
    for (const w of waiting) {
      if (w.since === null) return null;
      oldest = Math.min(oldest, w.since);
    }
  }
  return oldest;
}

const CARRIER = /(?:^|\0)TRAIN_JOB_ID=([^\0]*)/;

/**
 * Live (not zombie) processes started since `since` carrying one of `ids` (id -> pids), and
 * the processes whose environment read empty because an exec has not set it up yet.
 */
function carriers(
  ids: ReadonlySet<string>,
  since: number | null,
): { found: Map<string, number[]>; unsure: number[] } {
  const found = new Map<string, number[]>();
  const unsure: number[] = [];
  for (const [pid, ticks] of listProcesses()) {
    if (since !== null && ticks < since) continue;
    const environ = proc.environ(pid);
    if (environ === "") afterEmpty(pid, ids, found, unsure);
    else carrier(pid, environ, ids, found);
  }
  return { found, unsure };
}

/** Adds `pid` to `found` when `environ` carries one of `ids` and the process is not a zombie. */
function carrier(
  pid: number,
  environ: string | null,
  ids: ReadonlySet<string>,
  found: Map<string, number[]>,
): void {
  const id = environ === null ? undefined : CARRIER.exec(environ)?.[1];
  if (id === undefined || !ids.has(id)) return;
  if (live(proc.stat(pid))) found.set(id, [...found.get(id) ?? [], pid]);
}

/** After an empty read (see `emptyEnviron`): read again now, later (`unsure`), or not. */
function afterEmpty(
  pid: number,
  ids: ReadonlySet<string>,
  found: Map<string, number[]>,
  unsure: number[],
): void {
  const why = emptyEnviron(pid);
  if (why === "execing") unsure.push(pid);
  else if (why === "settled") carrier(pid, proc.environ(pid), ids, found);
}

/** How often, and how far apart (ms), an environment in the middle of an exec is read again. */
export const RECHECKS = 5;
const RECHECK_MS = 1;

/**
 * Reads the environments caught in an exec again, a millisecond apart, until they are set up
 * or the tries run out, and adds the processes that carry one of `ids` to `found`. An exec's
 * window is far shorter than a try. Only those pids are read, so a pass under churn (some job
 * is often execing) pays a millisecond, not another pass.
 */
async function recheckEmpty(
  unsure: number[],
  ids: ReadonlySet<string>,
  found: Map<string, number[]>,
): Promise<void> {
  for (let i = 0; unsure.length && i < RECHECKS; i++) {
    await new Promise((r) => setTimeout(r, RECHECK_MS));
    const again: number[] = [];
    for (const pid of unsure) {
      const environ = proc.environ(pid);
      if (environ === "") afterEmpty(pid, ids, found, again);
      else carrier(pid, environ, ids, found);
    }
    unsure = again;
  }
}

/** What the previous pass saw: pid -> start ticks, trusted as the header says. */
let known = new Map<number, number>();
let knownLastPid = -1;
let knownAt = 0;
/** The /proc `known` was read from: a test's fake is not the machine's. */
let knownFrom: ProcFs | null = null;
const TRUST_MS = 1000;

/** Live pids (zombies included) with their start ticks. */
function listProcesses(): Map<number, number> {
  // Read before the listing: every pid the listing shows above it is new to this pass.
  const lastPid = proc.lastPid();
  const now = Date.now();
  const trusted = lastPid !== null && lastPid >= knownLastPid && now - knownAt < TRUST_MS &&
    knownFrom === proc;
  const previous = trusted ? known : new Map<number, number>();
  const seen = new Map<number, number>();
  for (const pid of proc.pids()) {
    // A running job's leader is not read at all (see carriers); reaped, it is gone.
    if (leaders.has(pid)) continue;
    const ticks = rememberedTicks(pid, previous, knownLastPid, lastPid) ?? proc.stat(pid)?.ticks;
    if (ticks !== undefined) seen.set(pid, ticks);
  }
  known = seen;
  knownLastPid = lastPid ?? -1;
  knownAt = now;
  knownFrom = proc;
  return seen;
}

/**
 * The start ticks remembered for `pid`, unless the pid may have been handed out since: the
 * counter went from `before` to `now` between the passes, so pids in (before, now] are new or
 * reused.
 */
export function rememberedTicks(
  pid: number,
  previous: ReadonlyMap<number, number>,
  before: number,
  now: number | null,
): number | undefined {
  if (now === null || (pid > before && pid <= now)) return undefined;
  return previous.get(pid);
}
