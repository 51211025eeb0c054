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
 */

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
    sweeping ??= sweep().finally(() => sweeping = null);
  });
}

interface Sweep {
  killed: Set<number>;
  deadline: number;
  since: number | null;
  resolve(result: { killed: number[]; gone: boolean }): void;
}

const sweeps = new Map<string, Sweep[]>();
let sweeping: Promise<void> | null = null;

async function sweep(): Promise<void> {
  while (sweeps.size) {
    // One macrotask lets the jobs ending together join this pass.
    await new Promise((r) => setTimeout(r, 0));
    const byJob = carriers(new Set(sweeps.keys()), oldestStart());
    const now = Date.now();
    let killing = false;
    for (const [id, waiting] of sweeps) {
      const alive = byJob.get(id) ?? [];
      const left = waiting.filter((w) => {
        if (alive.length && now < w.deadline) return true;
        w.resolve({ killed: [...w.killed], gone: alive.length === 0 });
        return false;
      });
      for (const pid of alive) {
        try {
          Deno.kill(pid, "SIGKILL");
          for (const w of left) w.killed.add(pid);
        } catch {
          // gone already
        }
      }
      if (left.length) {
        sweeps.set(id, left);
        killing = true;
      } else sweeps.delete(id);
    }
    if (killing) await new Promise((r) => setTimeout(r, 20));
  }
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

/** Live (not zombie) processes started since `since` carrying one of `ids`: id -> pids. */
function carriers(ids: ReadonlySet<string>, since: number | null): Map<string, number[]> {
  const found = new Map<string, number[]>();
  for (const [pid, ticks] of listProcesses()) {
    if (since !== null && ticks < since) continue;
    let environ: string;
    try {
      environ = Deno.readTextFileSync(`/proc/${pid}/environ`);
    } catch {
      continue; // gone, or another user's
    }
    const id = CARRIER.exec(environ)?.[1];
    if (id === undefined || !ids.has(id)) continue;
    // A zombie is already dead: only its parent's wait is missing.
    const state = readStat(pid)?.state;
    if (state && state !== "Z" && state !== "X") found.set(id, [...found.get(id) ?? [], pid]);
  }
  return found;
}

/** What the previous pass saw: pid -> start ticks, trusted as the header says. */
let known = new Map<number, number>();
let knownLastPid = -1;
let knownAt = 0;
const TRUST_MS = 1000;

/** Live pids (zombies included) with their start ticks. */
function listProcesses(): Map<number, number> {
  // Read before the listing: every pid the listing shows above it is new to this pass.
  const lastPid = readLastPid();
  const now = Date.now();
  const trusted = lastPid !== null && lastPid >= knownLastPid && now - knownAt < TRUST_MS;
  const previous = trusted ? known : new Map<number, number>();
  const seen = new Map<number, number>();
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return seen;
  }
  for (const entry of entries) {
    const pid = Number(entry.name);
    if (!(pid > 0)) continue;
    const ticks = rememberedTicks(pid, previous, knownLastPid, lastPid) ?? readStat(pid)?.ticks;
    if (ticks !== undefined) seen.set(pid, ticks);
  }
  known = seen;
  knownLastPid = lastPid ?? -1;
  knownAt = now;
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

function readLastPid(): number | null {
  try {
    return Number(Deno.readTextFileSync("/proc/sys/kernel/ns_last_pid"));
  } catch {
    return null;
  }
}

function readStat(pid: number): { state: string; ticks: number } | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 20);
  return { state: fields[0], ticks: Number(fields[19]) };
}
