/**
 * Processes an earlier run of this worker left behind: it died (SIGKILL, a crash, a reboot of
 * the API side) without stopping its jobs. Their leases expire when this run registers, so
 * another attempt may already be running those jobs: they are killed before registering.
 */
import { findWorkerProcesses, readPgid, signalGroup } from "../jobs/process.ts";
import { sleep } from "./backoff.ts";

/**
 * SIGKILLs every live process carrying TRAINER_WORKER_NAME=`name`, with its process group,
 * scanning again until none is left or `ms` pass (a job may fork while it is being killed).
 * Returns the pids killed.
 */
export async function killLeftovers(name: string, ms = 2000): Promise<number[]> {
  const killed = new Set<number>();
  const ownGroup = readPgid(Deno.pid);
  const deadline = Date.now() + ms;
  for (;;) {
    const found = findWorkerProcesses(name).filter((pid) => pid !== Deno.pid);
    if (found.length === 0 || Date.now() >= deadline) break;
    for (const pid of found) {
      const pgid = readPgid(pid);
      // Each job leads its own group. A group led by a live process that is not one of
      // ours (a shell that ran something with our name) is left alone, and so is our own.
      const byGroup = !!pgid && pgid > 1 && pgid !== ownGroup && ownsGroup(pgid, found) &&
        signalGroup(pgid, "SIGKILL");
      try {
        Deno.kill(pid, "SIGKILL");
        killed.add(pid);
      } catch {
        // Gone already: killed with its group just now (and reaped by its parent at once),
        // or it ended by itself.
        if (byGroup) killed.add(pid);
      }
    }
    await sleep(20);
  }
  return [...killed];
}

function ownsGroup(pgid: number, ours: number[]): boolean {
  return ours.includes(pgid) || readPgid(pgid) === null;
}
