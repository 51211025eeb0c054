/**
 * Spawns a job as the leader of its own session and process group.
 *
 * The default is libc's posix_spawn with POSIX_SPAWN_SETSID, called through FFI
 * (posix_spawn.ts): the child runs setsid() before its exec, nothing else is exec'd, and the
 * parent's cost is a vfork-style clone, on a thread of the runtime's pool. Where that is not
 * available (no FFI permission, no glibc), a `setsid` program is spawned with the runtime's
 * fast path, which calls setsid() and execs the job in place (same pid).
 *
 * `Deno.Command` with `detached: true` runs setsid() in a pre-exec hook, which makes the
 * runtime fork() the whole server (copying its page tables) instead of using posix_spawn:
 * with 16 jobs starting and ending together that capped spawning at about 180 a second on
 * a 2-core machine, below what a no-op job needs. It is the last resort.
 *
 * Of the setsid programs, a statically linked busybox (Debian's busybox-static) is preferred
 * to util-linux's setsid: the dynamic loader's work in that extra exec was a fifth of all the
 * CPU under the peer benchmark (perf, 16 no-op jobs at a time), and a static setsid costs less
 * than half as much (a loop of `setsid -- /bin/true`: 1.2 ms more than `/bin/true` alone with
 * util-linux's, 0.55 ms with busybox's).
 */
import { spawn as spawnNode } from "node:child_process";
import { constants } from "node:os";
import { live, proc } from "./procfs.ts";
import { posixSpawn, posixSpawnAvailable } from "./posix_spawn.ts";
import { spawningLeader, trackLeader } from "./sweep.ts";
import { readStartTicks } from "./process.ts";

/** execvp()'s search path when the environment has no PATH. */
const DEFAULT_PATH = "/usr/bin:/bin";
const BUSYBOX = "/bin/busybox";
const UTIL_LINUX_SETSID = ["/usr/bin/setsid", "/bin/setsid"];

/**
 * How a job gets its own session: "posix_spawn" (see posix_spawn.ts); else the argv prefix
 * of a program that runs `-- program args` in a new session; null: `detached: true`.
 */
export type SetsidProgram = "posix_spawn" | readonly string[] | null;

let found: SetsidProgram | undefined;

/**
 * How jobs start, looked up once: posix_spawn when it is available; else busybox's setsid
 * applet when that busybox is statically linked and has it, else util-linux's, else none.
 */
export function setsidProgram(): SetsidProgram {
  if (found !== undefined) return found;
  if (posixSpawnAvailable()) return found = "posix_spawn";
  if (isExecutable(BUSYBOX) && isStatic(BUSYBOX) && hasApplet(BUSYBOX, "setsid")) {
    return found = [BUSYBOX, "setsid"];
  }
  const program = UTIL_LINUX_SETSID.find(isExecutable);
  return found = program ? [program] : null;
}

/**
 * A spawned job; `leading` settles once it leads its group (or has already ended). It is
 * polled only when first read: only a stop needs it, and polling every job's /proc stat on
 * timers until its setsid() ran cost the supervisor thread about 3% of its time (profiled,
 * 16 no-op jobs at a time).
 */
export interface Leader {
  child: JobChild;
  readonly leading: Promise<void>;
  /** The job opened `stdoutPath` itself, in a file description of its own. */
  readonly ownStdout: boolean;
}

/** A spawned job's process: `stdout` is null when it writes to a file. */
export interface JobChild {
  readonly pid: number;
  /**
   * Its kernel start time (clock ticks since boot), taken at the spawn, before anything can
   * reap it; null when it was gone already.
   */
  readonly startTicks: number | null;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stdout: AsyncIterable<Uint8Array> | null;
  readonly stderr: AsyncIterable<Uint8Array>;
}

export type SpawnOptions = Omit<Deno.CommandOptions, "args" | "detached" | "cwd" | "stdout"> & {
  /** Which way to start it; by default, setsidProgram(). */
  setsid?: SetsidProgram;
  /**
   * An open file descriptor the job's stdout goes to (its log file), instead of a pipe.
   * Needs posix_spawn or a setsid program; `Deno.Command` cannot pass a descriptor.
   */
  stdoutFd?: number;
  /**
   * The same file by name: with posix_spawn the job opens it itself instead of getting a copy
   * of `stdoutFd`, and `Leader.ownStdout` says so (see LogCapture.close).
   */
  stdoutPath?: string;
};

/**
 * Spawns `command` in a new session whose process group is led by the child (pgid = pid). The
 * stray sweep leaves the leader out until it is reaped (trackLeader).
 * Throws as `Deno.Command` does when the program cannot be found or run.
 */
export async function spawnLeader(command: string[], options: SpawnOptions): Promise<Leader> {
  const { setsid = setsidProgram(), stdoutFd, stdoutPath, ...rest } = options;
  if (!setsid) {
    if (stdoutFd !== undefined) {
      throw new Error("a job's stdout goes to a file only through setsid");
    }
    const child = withStartTicks(
      new Deno.Command(command[0], {
        ...rest,
        stdout: "piped",
        args: command.slice(1),
        detached: true,
      }).spawn(),
    );
    trackLeader(child.pid, child.status);
    return { child, leading: Promise.resolve(), ownStdout: false };
  }
  // Found here, so that a missing program fails the spawn (spawn_failed), not the job.
  const program = resolveProgram(command[0], rest.env?.PATH ?? DEFAULT_PATH);
  if (setsid === "posix_spawn") {
    // It leads its group before posix_spawn returns: setsid() ran before its exec.
    const target = stdoutPath !== undefined
      ? { path: stdoutPath }
      : stdoutFd === undefined
      ? undefined
      : { fd: stdoutFd };
    const spawned = posixSpawn([program, ...command.slice(1)], rest.env ?? {}, target)
      .then((child) => {
        trackLeader(child.pid, child.status);
        return child;
      });
    spawningLeader(spawned);
    const child = await spawned;
    return { child, leading: Promise.resolve(), ownStdout: stdoutPath !== undefined };
  }
  // A path, never a bare name: busybox would run its own applet of that name instead.
  const argv = [...setsid, "--", program, ...command.slice(1)];
  const child = stdoutFd === undefined
    ? withStartTicks(
      new Deno.Command(argv[0], { ...rest, stdout: "piped", args: argv.slice(1) }).spawn(),
    )
    : spawnToFile(argv, rest.env ?? {}, stdoutFd);
  trackLeader(child.pid, child.status);
  let leading: Promise<void> | null = null;
  return {
    child,
    get leading() {
      return leading ??= becomesLeader(child.pid);
    },
    ownStdout: false,
  };
}

/**
 * Spawns `argv` with stdout on `fd` and stderr piped, stdin closed, in exactly `env`.
 * Throws, as `Deno.Command` does, when it cannot start.
 */
function spawnToFile(argv: string[], env: Record<string, string>, fd: number): JobChild {
  const child = spawnNode(argv[0], argv.slice(1), { env, stdio: ["ignore", fd, "pipe"] });
  // Node reports a failed spawn (E2BIG, EAGAIN, ENOMEM...) as an 'error' event after this
  // returns; unheard, it would be an uncaught error that ends the whole thread.
  let failure: Error | null = null;
  child.once("error", (e) => failure ??= e);
  if (child.pid === undefined || !child.stderr) {
    throw new Deno.errors.NotFound(`Failed to spawn '${argv[0]}'`);
  }
  // A failure reported later still ends the job as a failed run (127: could not execute).
  const status = new Promise<Deno.CommandStatus>((resolve) => {
    const failed = () => resolve({ success: false, code: 127, signal: null });
    if (failure) return failed();
    child.once("exit", (code, signal) => {
      const number = signal ? constants.signals[signal] : 0;
      resolve({
        success: code === 0,
        code: code ?? 128 + number,
        signal: signal as Deno.Signal | null,
      });
    });
    child.once("error", failed);
  });
  return {
    pid: child.pid,
    startTicks: readStartTicks(child.pid),
    status,
    stdout: null,
    stderr: child.stderr,
  };
}

/** A `Deno.Command` child with its start time, read at once (the runtime reaps it later). */
function withStartTicks(child: Deno.ChildProcess): JobChild {
  return {
    pid: child.pid,
    startTicks: readStartTicks(child.pid),
    status: child.status,
    stdout: child.stdout,
    stderr: child.stderr,
  };
}

/**
 * Until setsid() ran in the child, its group does not exist yet and a signal to it would be
 * lost: stops wait for this. A child that has ended shows as a zombie or not at all, and the
 * wait ends at once; its pid is reused only after the kernel's pid counter wraps.
 */
async function becomesLeader(pid: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
    const stat = proc.stat(pid);
    // A zombie never leads a live group; it ended before or after its setsid().
    if (!live(stat) || stat.pgrp === pid) return;
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * Where a bare name was found on a PATH lately, reused for FOUND_MS: each directory searched
 * before it is a failed stat, and a failed stat throws, at about 40 µs an error (`true` on
 * Debian's PATH cost a no-op job three of them, a tenth of its launch).
 */
const onPath = new Map<string, { program: string; at: number }>();
const FOUND_MS = 1000;
const FOUND_MAX = 256;

/** The program execvp() would run: a path as given, else the first match on PATH. */
function resolveProgram(name: string, path: string): string {
  if (name.includes("/")) {
    requireExecutable(name);
    return name;
  }
  const key = `${path}\0${name}`;
  const now = Date.now();
  const kept = onPath.get(key);
  if (kept && now - kept.at < FOUND_MS) return kept.program;
  for (const dir of path.split(":")) {
    const full = `${dir || "."}/${name}`;
    if (!isExecutable(full)) continue;
    if (onPath.size >= FOUND_MAX) onPath.clear();
    onPath.set(key, { program: full, at: now });
    return full;
  }
  throw new Deno.errors.NotFound(`Failed to spawn '${name}': not found on PATH`);
}

function requireExecutable(name: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(name);
  } catch (e) {
    throw new Deno.errors.NotFound(`Failed to spawn '${name}': ${(e as Error).message}`);
  }
  if (!info.isFile || !((info.mode ?? 0o111) & 0o111)) {
    throw new Deno.errors.PermissionDenied(`Failed to spawn '${name}': not an executable file`);
  }
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** An ELF file with no PT_INTERP program header (no dynamic loader). */
export function isStatic(path: string): boolean {
  try {
    const file = Deno.openSync(path);
    try {
      const head = new Uint8Array(4096);
      const n = file.readSync(head) ?? 0;
      const view = new DataView(head.buffer, 0, n);
      // ELF64 little-endian only; anything else is taken as not static.
      if (n < 64 || view.getUint32(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) {
        return false;
      }
      const phoff = Number(view.getBigUint64(32, true));
      const size = view.getUint16(54, true);
      const count = view.getUint16(56, true);
      if (phoff + size * count > n) return false;
      for (let i = 0; i < count; i++) {
        if (view.getUint32(phoff + i * size, true) === 3) return false; // PT_INTERP
      }
      return true;
    } finally {
      file.close();
    }
  } catch {
    return false;
  }
}

function hasApplet(busybox: string, applet: string): boolean {
  try {
    const out = new Deno.Command(busybox, {
      args: ["--list"],
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success && new TextDecoder().decode(out.stdout).split("\n").includes(applet);
  } catch {
    return false;
  }
}
