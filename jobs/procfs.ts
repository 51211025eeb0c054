/**
 * The processes as /proc shows them, behind a seam (`ProcFs`) that tests can replace: what the
 * stray sweep (sweep.ts) and `findJobProcesses` (process.ts) read, and how a stray is killed.
 */

/** What is used of /proc/<pid>/stat. */
export interface Stat {
  state: string;
  /** The process group. */
  pgrp: number;
  flags: number;
  /** Start time, in clock ticks since boot. */
  ticks: number;
  envEnd: number;
}

/** False for a zombie (dead, only its parent's wait missing) and for a process that is gone. */
export function live(stat: Stat | null): stat is Stat {
  return stat !== null && stat.state !== "Z" && stat.state !== "X";
}

/** What is read of the processes, and how one is killed: /proc and kill(2). */
export interface ProcFs {
  /** The pid the kernel handed out last (`ns_last_pid`); null when unreadable. */
  lastPid(): number | null;
  pids(): Iterable<number>;
  /**
   * Null when the process is gone. `envEnd`: where its environment ends in its memory, 0 while
   * an exec has not set it up (and for a process without memory: a zombie, a kernel thread).
   */
  stat(pid: number): Stat | null;
  /** Null when the process is gone or not ours to read. */
  environ(pid: number): string | null;
  /** SIGKILL; false when the process is gone already. */
  kill(pid: number): boolean;
}

const linuxProc: ProcFs = {
  lastPid() {
    try {
      return Number(Deno.readTextFileSync("/proc/sys/kernel/ns_last_pid"));
    } catch {
      return null;
    }
  },
  *pids() {
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync("/proc");
    } catch {
      return;
    }
    for (const entry of entries) {
      const pid = Number(entry.name);
      if (pid > 0) yield pid;
    }
  },
  stat(pid) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    } catch {
      return null;
    }
    // Fields 3 to 51 of proc(5): state is 3, pgrp 5, flags 9, starttime 22, env_end 51.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 49);
    return {
      state: fields[0],
      pgrp: Number(fields[2]),
      flags: Number(fields[6]),
      ticks: Number(fields[19]),
      envEnd: Number(fields[48]),
    };
  },
  environ(pid) {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/environ`);
    } catch {
      return null;
    }
  },
  kill(pid) {
    try {
      Deno.kill(pid, "SIGKILL");
      return true;
    } catch {
      return false;
    }
  },
};

/** The machine's /proc, or a test's fake (`useProcFs`). */
export let proc: ProcFs = linuxProc;

/**
 * The sweep and `findJobProcesses` read `fake` instead of /proc until the returned function is
 * called: for tests of what they decide from what they read, such as an environment caught
 * mid-exec, which a real process cannot be held in.
 */
export function useProcFs(fake: ProcFs): () => void {
  proc = fake;
  return () => {
    proc = linuxProc;
  };
}

/** Set in a kernel thread's stat flags (PF_KTHREAD): it has no environment, ever. */
const KERNEL_THREAD = 0x200000;
/** Set in an exiting process's stat flags (PF_EXITING): its memory, environment too, is going. */
const EXITING = 0x4;

/**
 * Why a process's environment read empty. For a moment of an exec the new one is not set up
 * yet (1,619 of 260,240 reads of a `setsid sleep` just after its start, in stop 19), and its
 * `env_end` (stat) is still 0 then: "execing", read it again in a moment. Once `env_end` is
 * set, the exec has ended since the read or the process has none (`env -i`): "settled", read it
 * once more now. A zombie, an exiting process and a kernel thread read empty too, as does a
 * process that is gone: "none", nothing to read.
 */
export function emptyEnviron(pid: number): "execing" | "settled" | "none" {
  const stat = proc.stat(pid);
  if (!live(stat) || stat.flags & (KERNEL_THREAD | EXITING)) return "none";
  return stat.envEnd === 0 ? "execing" : "settled";
}
