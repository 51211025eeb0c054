/**
 * A local job's stdout, written straight into a file, and its log file.
 *
 * The job writes into a spool file of its own (a pipe made it wait on the server reading it:
 * with 1,000,000 lines its own run took 3-3.5x its run into a file). The collector reads the
 * spool behind it and appends runs of plain lines to the job's log file (`<job id>.stdout`),
 * which only the server writes: log events hold ranges of that file, and what a job does to
 * its own stdout afterwards (`tee /dev/stdout` truncates it; a process that outlived its job
 * appends to it) cannot change a stored line. The spool is removed when the run ends, or
 * emptied and kept for a later job (`close(true)`, see LogFolder).
 */
import {
  closeSync,
  fdatasync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { logFileName } from "../db/log_files.ts";
import { libc } from "./libc.ts";

/** What the collector reads a job's stdout through, and keeps its lines with. */
export interface LogSource {
  /** Reads the job's stdout into `into` from `position`; 0 at its end (so far). */
  read(into: Uint8Array, position: number): number;
  /** How much the job has written so far (less than was read: it truncated its stdout). */
  size(): number;
  /** Appends `lines` (whole lines, the last "\n" included) to the log file; where they went. */
  keep(lines: Uint8Array): { name: string; offset: number };
  /** Resolves once everything kept so far is on disk, the file's name included. */
  sync(): Promise<void>;
  /** Told how far the reader is (`readTo`), to hold back a job far ahead of it. */
  behind?(readTo: number): void;
}

const SPOOL = ".spool-";
/** Unread spool past which the job is stopped until the reader is within SPOOL_LAG_RESUME. */
const SPOOL_LAG_MAX = 256 * 1024 * 1024;
const SPOOL_LAG_RESUME = 64 * 1024 * 1024;

/**
 * A server's log folder. A job's spool is a spare made ahead of time, off the supervisor's
 * thread: on the ext4 of our machines (no journal) creating a file after many were removed
 * took 2 ms in the kernel, looking for a free inode, and that was on every launch's path
 * (dispatch p50 went from 3 to 5.7 ms).
 *
 * Made on another thread, that search still cost the machine about 0.5 ms a job (a tenth of
 * all its CPU with 16 no-op jobs at a time, perf: `ext4_create` in `find_inode_bit` and
 * `recently_deleted`). So a spool whose job opened it itself, by name, is emptied and kept
 * when the job is over and no process has it open any more (`LogCapture.close(true)`), and
 * files are made only when there is none to reuse.
 */
export class LogFolder {
  #spares: string[] = [];
  #filling = false;
  #filled: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(readonly dir: string, readonly keep: number) {
    Deno.mkdirSync(dir, { recursive: true });
    syncDir(`${dir}/..`);
    // An earlier run's spools go, spares too: a process of a job that outlived that run
    // could still hold one and write into the next job's output.
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isFile && entry.name.startsWith(SPOOL)) Deno.removeSync(`${dir}/${entry.name}`);
    }
    this.#refill();
  }

  /** A capture of `jobId`'s stdout for one run. */
  open(jobId: string): LogCapture {
    let spool = this.#spares.pop();
    if (spool === undefined) {
      spool = `${SPOOL}${crypto.randomUUID()}`;
      closeSync(openSync(`${this.dir}/${spool}`, "wx", 0o600));
    }
    this.#refill();
    const capture = new LogCapture(this.dir, jobId, spool);
    capture.recycle = (name) => this.#recycle(name);
    return capture;
  }

  /**
   * An emptied spool is kept as a spare, up to twice `keep`: the refill tops spares up to
   * `keep` while a job holds each spool, so with room for only `keep` a returned one would
   * usually be removed and a new one made again.
   */
  #recycle(name: string): void {
    if (!this.#closed && this.#spares.length < 2 * this.keep) this.#spares.push(name);
    else {
      try {
        unlinkSync(`${this.dir}/${name}`);
      } catch { /* gone already */ }
    }
  }

  /**
   * Makes no more spares; resolves once the one being made, if any, is made. A spare made
   * after its folder was removed would fail; one made while it is removed makes it fail.
   */
  close(): Promise<void> {
    this.#closed = true;
    return this.#filled;
  }

  #refill(): void {
    if (this.#closed || this.#filling || this.#spares.length >= this.keep) return;
    this.#filling = true;
    this.#filled = (async () => {
      while (!this.#closed && this.#spares.length < this.keep) {
        const name = `${SPOOL}${crypto.randomUUID()}`;
        const path = `${this.dir}/${name}`;
        (await Deno.open(path, { write: true, createNew: true, mode: 0o600 })).close();
        this.#spares.push(name);
      }
    })().catch(() => {}).finally(() => this.#filling = false);
  }
}

export class LogCapture implements LogSource {
  /** The spool's descriptor, for the job's stdout (the job gets its own copy). */
  readonly fd: number;
  /** The log file's name in the folder. */
  readonly name: string;
  readonly ended: Promise<void>;
  #end!: () => void;
  #endSize: number | null = null;
  #spool: string;
  readonly spoolName: string;
  #path: string;
  #log: { fd: number; size: number; named: boolean } | null = null;
  #syncing = 0;
  #closed = false;

  constructor(
    readonly dir: string,
    jobId: string,
    spool: string,
    readonly lag = { max: SPOOL_LAG_MAX, resume: SPOOL_LAG_RESUME },
  ) {
    this.name = logFileName(jobId);
    this.#path = `${dir}/${this.name}`;
    this.spoolName = spool;
    this.#spool = `${dir}/${spool}`;
    this.fd = openSync(this.#spool, "a+", 0o600);
    this.ended = new Promise((resolve) => this.#end = resolve);
  }

  read(into: Uint8Array, position: number): number {
    // After close() the number may already be another file's.
    if (this.#closed) throw new Error(`${this.name}: the capture was closed`);
    const left = this.#endSize === null ? into.length : this.#endSize - position;
    if (left <= 0) return 0;
    return readSync(this.fd, into, 0, Math.min(into.length, left), position);
  }

  size(): number {
    return fstatSync(this.fd).size;
  }

  keep(lines: Uint8Array): { name: string; offset: number } {
    if (this.#closed) throw new Error(`${this.name}: the capture was closed`);
    const log = this.#log ??= this.#openLog();
    const offset = log.size;
    try {
      for (let at = 0; at < lines.length;) at += writeSync(log.fd, lines, at, lines.length - at);
    } finally {
      // A write that failed part way (ENOSPC) left some bytes: what follows goes after them.
      log.size = fstatSync(log.fd).size;
    }
    return { name: this.name, offset };
  }

  /** The log file, appended to: a retry's lines follow the earlier runs'. */
  #openLog(): { fd: number; size: number; named: boolean } {
    try {
      return { fd: openSync(this.#path, "ax", 0o640), size: 0, named: false };
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
      const fd = openSync(this.#path, "a");
      return { fd, size: fstatSync(fd).size, named: true };
    }
  }

  async sync(): Promise<void> {
    // After close() the number may already be another file's.
    if (this.#closed) throw new Error(`${this.name}: the capture was closed`);
    const log = this.#log;
    if (log === null) return;
    this.#syncing++;
    try {
      await new Promise<void>((ok, fail) => fdatasync(log.fd, (e) => e ? fail(e) : ok()));
      // A new file's name is durable only once its folder is synced.
      if (!log.named) {
        syncDir(this.dir);
        log.named = true;
      }
    } finally {
      this.#syncing--;
      if (this.#closed && this.#syncing === 0) closeSync(log.fd);
    }
  }

  /**
   * Stops the job (`pause(true)`: SIGSTOP to its group, set by the supervisor) while the
   * reader is more than SPOOL_LAG_MAX behind it, and lets it go on once it is within
   * SPOOL_LAG_RESUME: the job waits as it would on a full pipe, and a job printing forever
   * grows the disk only as fast as its lines are kept.
   */
  pause: ((stop: boolean) => void) | null = null;
  #paused = false;

  behind(readTo: number): void {
    if (!this.pause || this.#closed) return;
    const lag = this.size() - readTo;
    if (!this.#paused && lag > this.lag.max && this.#endSize === null) {
      this.#paused = true;
      this.pause(true);
    } else if (this.#paused && lag <= this.lag.resume) {
      this.#paused = false;
      this.pause(false);
    }
  }

  /** Lets a paused job go on, and never pauses it again (it is being stopped, or ended). */
  release(): void {
    const pause = this.pause;
    this.pause = null;
    if (this.#paused) pause?.(false);
    this.#paused = false;
  }

  /** No process of the job is left: the reader stops at what the spool holds now. */
  end(): void {
    this.release();
    if (this.#endSize === null && !this.#closed) this.#endSize = this.size();
    this.#end();
  }

  /** Where the job may open its stdout itself (its own open file description). */
  get spoolPath(): string {
    return this.#spool;
  }

  /** Takes an emptied spool back (set by its LogFolder); null: spools are removed. */
  recycle: ((spool: string) => void) | null = null;

  /**
   * Closes the capture and removes the spool, or with `reuse` empties it and hands it back to
   * its folder. Called once the output is stored. `reuse` is for a job that opened the spool
   * by name: then any process still holding it has a file description of its own, which the
   * write-lease test sees (a copy of the capture's own descriptor would not be seen); a spool
   * still open elsewhere is removed, so nothing a leftover writes reaches another job.
   */
  close(reuse = false): void {
    if (this.#closed) return;
    this.end();
    this.#closed = true;
    if (!(reuse && this.#emptied())) {
      try {
        unlinkSync(this.#spool);
      } catch { /* gone already */ }
    }
    closeSync(this.fd);
    // A sync still running closes the log file when it is done (the number could be reused).
    if (this.#log && this.#syncing === 0) closeSync(this.#log.fd);
  }

  /** Empties the spool and hands it back when no other process has it open. */
  #emptied(): boolean {
    const recycle = this.recycle;
    if (!recycle) return false;
    try {
      if (!onlyOpener(this.fd)) return false;
      ftruncateSync(this.fd, 0);
    } catch {
      return false;
    }
    recycle(this.spoolName);
    return true;
  }
}

const F_SETLEASE = 1024;
const F_SETSIG = 10;
const F_WRLCK = 1;
const F_UNLCK = 2;
const SIGURG = 23;

/**
 * True when `fd`'s file is open in no other file description, in this process or any other:
 * the kernel grants a write lease only then (fcntl F_SETLEASE), and it is let go at once.
 * False when that cannot be told (no FFI here, leases disabled, another filesystem's rules).
 */
function onlyOpener(fd: number): boolean {
  const c = libc();
  // Another process opening the file while the lease is held breaks it, and the kernel tells
  // the holder with a signal: SIGIO by default, which would end this process; SIGURG is
  // ignored unless handled.
  if (!c || c.fcntl(fd, F_SETSIG, SIGURG) !== 0) return false;
  if (c.fcntl(fd, F_SETLEASE, F_WRLCK) !== 0) return false;
  c.fcntl(fd, F_SETLEASE, F_UNLCK);
  return true;
}

function syncDir(dir: string): void {
  const folder = Deno.openSync(dir);
  try {
    folder.syncSync();
  } finally {
    folder.close();
  }
}
