/** Small /proc readers: memory of a process, process groups, job processes by environment. */
import { findJobProcesses } from "../../jobs/process.ts";

/** VmRSS and VmHWM of `pid` in MB, or null when it is gone. */
export function memoryMb(pid: number): { rss: number; peak: number } | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

/** Samples a process's RSS every `everyMs` until stopped; returns the maximum seen. */
export function sampleRss(
  pid: number,
  everyMs = 100,
): { stop(): { maxRss: number; peak: number } } {
  let maxRss = 0;
  let peak = 0;
  const take = () => {
    const m = memoryMb(pid);
    if (m) {
      maxRss = Math.max(maxRss, m.rss);
      peak = Math.max(peak, m.peak);
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      take();
      clearInterval(timer);
      return { maxRss, peak };
    },
  };
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  startTicks: number;
}

/** Fields of /proc/<pid>/stat, or null when the process is gone. */
export function procStat(pid: number): ProcInfo | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid, state: f[0], ppid: Number(f[1]), pgid: Number(f[2]), startTicks: Number(f[19]) };
  } catch {
    return null;
  }
}

/** Live (non-zombie) processes whose environment has TRAIN_JOB_ID in `ids`: pid -> job id. */
export const jobProcesses = findJobProcesses;

/** Direct children of `pid` that are alive (not zombies). */
export function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const st = procStat(Number(entry.name));
    if (st && st.ppid === pid && st.state !== "Z" && st.state !== "X") kids.push(st.pid);
  }
  return kids;
}
