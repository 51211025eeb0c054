/**
 * Linux process-group helpers: signal a group, tell whether it lives, find strays (and a
 * remote worker's leftovers) by environment.
 */
import { getPriority, setPriority } from "node:os";
import process from "node:process";

import { emptyEnviron, live, proc } from "./procfs.ts";
import { errno, libc } from "./libc.ts";

const PRIO_PROCESS = 0;
const ESRCH = 3;

export { killJobProcesses } from "./sweep.ts";

export type StopSignal = "SIGTERM" | "SIGKILL";

/**
 * True while any process of the group is alive. kill(2) also reaches zombies, and an orphaned
 * grandchild stays a zombie until init reaps it (seconds on some machines), so members are
 * counted from /proc, zombies excluded.
 */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    if ((e as { code?: string }).code !== "EPERM") return false;
  }
  return liveMembers(pgid) !== 0;
}

/** Live (not zombie) processes of a group; -1 when /proc cannot be read. */
function liveMembers(pgid: number): number {
  let count = 0;
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const stat = proc.stat(Number(entry.name));
      if (live(stat) && stat.pgrp === pgid) count++;
    }
  } catch {
    return -1;
  }
  return count;
}

/**
 * Lowers a just-started job's priority (setpriority on its pid), right after the spawn: what
 * the job starts from then on inherits it. It is not atomic with the spawn (Deno.Command has
 * no option for it, and a `nice` exec per job would cost as much as the job's own start), so
 * a process the job starts in its very first moments, before this call, keeps the supervisor
 * thread's (see supervisor_thread.ts). A training script's imports take far longer. A job that
 * is already gone needs none.
 */
export function setNice(pid: number, nice: number, log: (message: string) => void): void {
  const c = libc();
  if (c) {
    if (c.setpriority(PRIO_PROCESS, pid, nice) === 0) return;
    const code = errno(c);
    if (code !== ESRCH) log(`could not set the niceness of ${pid}: errno ${code}`);
    return;
  }
  try {
    setPriority(pid, nice);
  } catch (e) {
    // node's setPriority throws ERR_SYSTEM_ERROR, with the errno's name under `info`.
    const error = e as { code?: string; info?: { code?: string } };
    if ((error.info?.code ?? error.code) !== "ESRCH") {
      log(`could not set the niceness of ${pid}: ${e}`);
    }
  }
}

/**
 * With autogroup scheduling (`sched_autogroup_enabled`, on in Debian's kernels), setsid() gives
 * each job an autogroup of its own, and the CPU is shared between autogroups before niceness
 * counts: a job's niceness then weighs it only against its own processes. Measured here (three
 * busy loops on two cores, two of them in sessions of their own at niceness 10): the loop in the
 * server's session got 162 units of work against the jobs' 168 and 193. With each job's
 * autogroup at niceness 10 as well: 199 against 138 and 148.
 */
export const AUTOGROUPS =
  readTextOr("/proc/sys/kernel/sched_autogroup_enabled", "0").trim() === "1";
const OWN_AUTOGROUP = autogroupName("self");

/**
 * Sets the niceness of a job's own autogroup, once it has one (after its setsid()). Never the
 * server's: the job's autogroup is read first, and one that is still the server's is left
 * alone (a job already gone, too). Best effort: without CAP_SYS_ADMIN the kernel takes such a
 * write at most every 100 ms, system-wide (EAGAIN).
 */
export function setAutogroupNice(pid: number, nice: number, log: (message: string) => void): void {
  const group = autogroupName(String(pid));
  if (group === null || group === OWN_AUTOGROUP) return;
  try {
    Deno.writeTextFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch (e) {
    const code = (e as { code?: string }).code;
    const gone = code === "ESRCH" || e instanceof Deno.errors.NotFound;
    const limited = code === "EAGAIN" || e instanceof Deno.errors.WouldBlock;
    if (!gone && !limited) {
      log(`could not set the autogroup niceness of ${pid}: ${e}`);
    }
  }
}

/** "/autogroup-123" from /proc/<pid>/autogroup ("/autogroup-123 nice 0"); null if unreadable. */
function autogroupName(pid: string): string | null {
  const text = readTextOr(`/proc/${pid}/autogroup`, null);
  return text === null ? null : text.split(" ")[0];
}

function readTextOr<T>(path: string, otherwise: T): string | T {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return otherwise;
  }
}

/**
 * Raises the calling thread's niceness to `nice` (never lowers it: that needs privileges). On
 * Linux a niceness belongs to a thread, and a process inherits its spawning thread's at once.
 */
export function niceThisThread(nice: number, log: (message: string) => void): void {
  try {
    if (getPriority(0) < nice) setPriority(0, nice);
  } catch (e) {
    log(`could not set the supervisor thread's niceness: ${e}`);
  }
}

/** Signals the whole group; false when it was already gone. */
export function signalGroup(pgid: number, signal: StopSignal | "SIGSTOP" | "SIGCONT"): boolean {
  try {
    Deno.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * The kernel's start time of a process (clock ticks since boot), or null when it does not
 * exist. Recorded at spawn so that a later check is not fooled by a reused pid.
 */
export function readStartTicks(pid: number): number | null {
  return proc.stat(pid)?.ticks ?? null;
}

/** True when `pid` is alive and is the very process that started at `startTicks`. */
export function isSameProcess(pid: number, startTicks: number | null): boolean {
  const now = readStartTicks(pid);
  return now !== null && (startTicks === null || now === startTicks);
}

/** Waits until the group is gone or `ms` pass; true when gone. */
export async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (groupAlive(pgid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/**
 * Stops a group: SIGTERM, then SIGKILL if any member is still there after `graceMs`. The
 * grace is the whole group's: a leader that dies at once does not cut short a member that
 * is still cleaning up.
 */
export async function stopGroup(
  pgid: number,
  graceMs: number,
): Promise<{ stopped_with: StopSignal | null; group_gone: boolean }> {
  if (!signalGroup(pgid, "SIGTERM")) return { stopped_with: null, group_gone: true };
  if (await waitGroupGone(pgid, graceMs)) return { stopped_with: "SIGTERM", group_gone: true };
  signalGroup(pgid, "SIGKILL");
  return { stopped_with: "SIGKILL", group_gone: await waitGroupGone(pgid, 1000) };
}

/**
 * Live processes whose environment carries `TRAIN_JOB_ID` of one of `jobIds` (of any job when
 * `jobIds` is null): pid -> job id.
 */
export function findJobProcesses(jobIds: ReadonlySet<string> | null): Map<number, string> {
  if (jobIds?.size === 0) return new Map();
  return findProcessesByEnv("TRAIN_JOB_ID", (value) => !jobIds || jobIds.has(value));
}

/**
 * Live processes started by a worker named `name` (their environment carries
 * `TRAINER_WORKER_NAME=<name>`, which the remote worker gives every job): a restarted worker
 * finds what its earlier run left behind.
 */
export function findWorkerProcesses(name: string): number[] {
  return [...findProcessesByEnv("TRAINER_WORKER_NAME", (value) => value === name).keys()];
}

/**
 * Live (not zombie) processes whose environment holds `variable` with a value `accept`s:
 * pid -> value. Processes whose environment cannot be read (another user's) are skipped.
 */
function findProcessesByEnv(
  variable: string,
  accept: (value: string) => boolean,
): Map<number, string> {
  const found = new Map<number, string>();
  const pattern = new RegExp(`(?:^|\0)${variable}=([^\0]*)`);
  for (const pid of proc.pids()) {
    const match = pattern.exec(readEnviron(pid) ?? "");
    if (!match || !accept(match[1])) continue;
    if (live(proc.stat(pid))) found.set(pid, match[1]);
  }
  return found;
}

/** How long (ms) an environment caught in the middle of an exec is read again, at most. */
const EXEC_SPIN_MS = 5;

/**
 * A process's environment; one caught in the middle of an exec is read again until it is set
 * up (see `emptyEnviron`). A busy wait, since callers are synchronous, but a short one: these
 * scans run at a server's or a worker's start, and an exec's window is microseconds.
 */
function readEnviron(pid: number): string | null {
  const until = performance.now() + EXEC_SPIN_MS;
  for (;;) {
    const environ = proc.environ(pid);
    if (environ !== "") return environ;
    const why = emptyEnviron(pid);
    if (why === "settled") return proc.environ(pid);
    if (why === "none" || performance.now() >= until) return environ;
  }
}

/** The process group of a live process; null when it is gone. */
export function readPgid(pid: number): number | null {
  return proc.stat(pid)?.pgrp ?? null;
}
