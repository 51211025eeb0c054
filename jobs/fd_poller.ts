/**
 * Waits for many file descriptors on one thread: a job's pipes and the pidfd that tells its
 * exit. One `poll(2)` call at a time runs on the runtime's blocking-thread pool, over every
 * descriptor something waits for, plus an eventfd that wakes it when that set changes; reads
 * and the exit status are then taken with calls that return at once. So however many jobs run,
 * the launcher holds one of the pool's threads (see libc.ts), and none while nothing runs.
 */
import { constants } from "node:os";
import type { Libc } from "./libc.ts";

const POLLIN = 0x1;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const P_PIDFD = 3;
const WEXITED = 4;
const WNOHANG = 1;
const CLD_EXITED = 1;
const CHUNK = 16 * 1024;
/** A descriptor reported ready this many times in a row with nothing to take is broken. */
const RETRIES = 100;

export class FdPoller {
  #waiters = new Map<number, () => void>();
  /** Closed once no poll call can be looking at them: a number reused meanwhile would be. */
  #closing: number[] = [];
  #wake: number;
  #polling = false;
  #looping = false;
  #kicked = false;
  #one = new BigUint64Array([1n]);
  #drain = new BigUint64Array(1);

  constructor(readonly libc: Libc) {
    this.#wake = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wake < 0) throw new Error("cannot create an eventfd");
  }

  /** Resolves once `fd` can be read (or has hung up, or failed). One waiter per descriptor. */
  readable(fd: number): Promise<void> {
    return new Promise((resolve) => {
      this.#waiters.set(fd, resolve);
      this.#kick();
      void this.#loop();
    });
  }

  /** Closes `fd` now, or once the poll call in progress has returned. */
  close(fd: number): void {
    this.#waiters.delete(fd);
    if (!this.#polling) {
      this.libc.close(fd);
      return;
    }
    this.#closing.push(fd);
    this.#kick();
  }

  /** Makes reads of `fd` return at once (the job's own end stays blocking). */
  nonBlocking(fd: number): void {
    const flags = this.libc.fcntl(fd, F_GETFL, 0);
    if (flags < 0 || this.libc.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      throw new Error("cannot make a job's pipe non-blocking");
    }
  }

  /** Wakes the poll call in progress, so that it starts again over the current set. */
  #kick(): void {
    if (!this.#polling || this.#kicked) return;
    this.#kicked = true;
    this.libc.write(this.#wake, this.#one, 8n);
  }

  async #loop(): Promise<void> {
    if (this.#looping) return;
    this.#looping = true;
    try {
      while (this.#waiters.size) {
        const fds = [this.#wake, ...this.#waiters.keys()];
        // struct pollfd: int fd; short events; short revents (little-endian: events low).
        const set = new Int32Array(fds.length * 2);
        fds.forEach((fd, i) => {
          set[2 * i] = fd;
          set[2 * i + 1] = POLLIN;
        });
        this.#polling = true;
        const n = await this.libc.poll(set, BigInt(fds.length), -1);
        this.#polling = false;
        this.#kicked = false;
        this.libc.read(this.#wake, this.#drain, 8n);
        for (const fd of this.#closing.splice(0)) this.libc.close(fd);
        if (n <= 0) continue; // EINTR
        for (let i = 1; i < fds.length; i++) {
          if (((set[2 * i + 1] >>> 16) & 0xffff) === 0) continue;
          const resolve = this.#waiters.get(fds[i]);
          this.#waiters.delete(fds[i]);
          resolve?.();
        }
      }
    } finally {
      this.#looping = false;
    }
  }
}

/** A pipe's bytes until its end (every writer closed it); the pipe is closed after. */
export async function* pipeChunks(poller: FdPoller, fd: number): AsyncGenerator<Uint8Array> {
  const { libc } = poller;
  try {
    poller.nonBlocking(fd);
    let buffer: Uint8Array | null = null;
    // The first read after a wake-up is a plain call, which returns at once on this
    // non-blocking pipe: a job that has written nothing yet, or has ended, costs no trip
    // through the pool (two a no-op job, most of its reads). A read that follows data goes
    // through the pool, so that a pipe that always has data yields between its chunks.
    let woken = true;
    for (let idle = 0;;) {
      buffer ??= new Uint8Array(CHUNK);
      const n = Number(
        woken
          ? libc.read(fd, buffer, BigInt(CHUNK))
          : await libc.read_async(fd, buffer, BigInt(CHUNK)),
      );
      woken = false;
      if (n === 0) return;
      if (n > 0) {
        idle = 0;
        const chunk = buffer.subarray(0, n);
        buffer = null;
        yield chunk;
        continue;
      }
      // EAGAIN (nothing yet) or EINTR: wait until there is something.
      if (++idle > RETRIES) throw new Error("reading a job's pipe keeps failing");
      await poller.readable(fd);
      woken = true;
    }
  } finally {
    poller.close(fd);
  }
}

/**
 * The end of `pid` (a child of this process not yet reaped), as `Deno.CommandStatus`, taken
 * through a pidfd: it becomes readable when the child exits, and waitid() then reaps it.
 * A status that cannot be read (another waiter of this process reaped the child) is reported
 * as exit code 255.
 */
export async function exitStatus(poller: FdPoller, pid: number): Promise<Deno.CommandStatus> {
  const { libc } = poller;
  const pidfd = libc.pidfd_open(pid, 0);
  // No descriptor to spare (EMFILE): wait on a pool thread of its own instead.
  if (pidfd < 0) return await blockingWait(libc, pid);
  // siginfo_t: si_signo, si_errno, si_code, a pad, si_pid, si_uid, si_status (ints).
  const info = new Int32Array(32);
  try {
    for (let tries = 0; tries <= RETRIES; tries++) {
      info.fill(0);
      if (libc.waitid(P_PIDFD, pidfd, info, WEXITED | WNOHANG) === 0 && info[4] !== 0) {
        return info[2] === CLD_EXITED ? exited(info[6]) : killed(info[6]);
      }
      await poller.readable(pidfd);
    }
    return exited(255);
  } finally {
    poller.close(pidfd);
  }
}

/** waitpid(pid) on a thread of the pool, for when no pidfd can be had. */
async function blockingWait(libc: Libc, pid: number): Promise<Deno.CommandStatus> {
  const word = new Int32Array(1);
  for (let tries = 0; tries <= RETRIES; tries++) {
    if (await libc.waitpid(pid, word, 0) !== pid) continue;
    const signal = word[0] & 0x7f;
    return signal === 0 ? exited((word[0] >> 8) & 0xff) : killed(signal);
  }
  return exited(255);
}

function exited(code: number): Deno.CommandStatus {
  return { success: code === 0, code, signal: null };
}

function killed(signal: number): Deno.CommandStatus {
  return { success: false, code: 128 + signal, signal: SIGNAL_NAMES.get(signal) ?? null };
}

/** Signal names by number; the first of aliases (SIGABRT, not SIGIOT), as `Deno.Command` says. */
const SIGNAL_NAMES = new Map<number, Deno.Signal>();
for (const [name, number] of Object.entries(constants.signals)) {
  if (!SIGNAL_NAMES.has(number)) SIGNAL_NAMES.set(number, name as Deno.Signal);
}
