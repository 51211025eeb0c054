/**
 * Commits on a thread of its own. The native driver's calls are synchronous: a commit held
 * the main thread for its fsync, during which no request was read and no answer sent. The
 * accept benchmark's main thread was idle 42 % of the time at 2,165 req/s (perf, 2 cores, the
 * rest of the machine idle too): each group commit stalled the event loop for its sync.
 *
 * The writer thread holds the one connection the event store commits on; the main thread's
 * connections only read (WAL: they see each commit once it returns). The store sends one
 * batch at a time (its drain awaits each commit), and the batch's units resolve only once
 * the thread's COMMIT has returned: a 2xx still means the events are on disk. The thread
 * starts with the first write and ends after IDLE_MS without one: its isolate costs about
 * 9 MB of RSS (measured: 136 -> 145 MB after 20 jobs), which a server that only serves reads
 * should not pay. A thread takes 60-130 ms to start (a new isolate and the driver): the
 * writes sent meanwhile commit on the main thread's connection (`fallback`), as they did before
 * the thread existed, so the first submission after an idle spell is not held for it
 * (measured: 93-136 ms for that request before, against 5-7 ms for the next ones).
 */
import type { InStatement } from "@libsql/client";

export type WriterMessage =
  | { type: "open"; path: string; busyTimeoutMs: number; autocheckpointPages: number }
  | { type: "batch"; id: number; statements: { sql: string; args: unknown[] }[] }
  | { type: "close" };

export type WriterReply =
  | { type: "opened" }
  | { type: "failed"; error: string }
  | { type: "done"; id: number; error: string | null }
  | { type: "closed" };

export interface WriterOptions {
  busyTimeoutMs: number;
  /** The writer connection's `wal_autocheckpoint` (SQLite's default is 1000 pages). */
  autocheckpointPages: number;
  /** The thread ends after this long without a write (IDLE_MS unless given). */
  idleMs?: number;
  /**
   * Commits a batch on the main thread's connection, while the thread is starting. Without
   * it, those batches wait for the thread.
   */
  fallback?: (statements: InStatement[]) => Promise<void>;
  /** Where a thread's failure is reported, once (with a fallback, writes go on without it). */
  onError?: (message: string) => void;
}

/** The thread ends after this long without a write. */
const IDLE_MS = 30_000;

interface Pending {
  resolve(): void;
  reject(error: Error): void;
}

export class ThreadWriter {
  #worker: Worker | null = null;
  /** The thread whose connection is open; batches go to it while it is #worker. */
  #ready: Worker | null = null;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #closing: Promise<void> | null = null;
  #idle: ReturnType<typeof setTimeout> | null = null;
  /** A thread start scheduled after a write that committed on the main thread. */
  #startSoon: ReturnType<typeof setTimeout> | null = null;
  /**
   * Set when a thread failed and there is a fallback: writes stay on the main thread's
   * connection from then on, rather than start (and stall on) a thread that fails each time.
   */
  #broken = false;

  constructor(readonly path: string, readonly opts: WriterOptions) {}

  /** True while a thread is up (it starts with a write, and ends when idle or closed). */
  get running(): boolean {
    return this.#worker !== null;
  }

  /** True once the current thread's connection is open (writes then commit there). */
  get threadReady(): boolean {
    return this.#ready !== null && this.#ready === this.#worker;
  }

  /** Runs `statements` as one transaction on the writer thread; resolves once committed. */
  write(statements: InStatement[]): Promise<void> {
    if (this.#closing) return Promise.reject(new Error("the database is closed"));
    if (this.#idle !== null) clearTimeout(this.#idle);
    this.#idle = null;
    if ((!this.threadReady || this.#broken) && this.opts.fallback) {
      // `new Worker` holds the calling thread for about 26 ms (measured): started after this
      // commit, not before it. The store sends one batch at a time, so this one cannot
      // overtake a batch on the thread.
      if (!this.#worker && !this.#broken) {
        this.#startSoon ??= setTimeout(() => {
          this.#startSoon = null;
          if (!this.#closing && !this.#worker) this.#start();
        }, 0);
      }
      return this.opts.fallback(statements);
    }
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    const batch = statements.map((s) =>
      typeof s === "string"
        ? { sql: s, args: [] }
        : { sql: s.sql, args: Array.isArray(s.args) ? s.args : s.args ? named(s.sql) : [] }
    );
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ type: "batch", id, statements: batch } satisfies WriterMessage);
    });
  }

  /** After the last answer, ends the thread once IDLE_MS pass without a write. */
  #armIdle(worker: Worker): void {
    if (this.#pending.size > 0 || this.#closing) return;
    if (this.#idle !== null) clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      this.#idle = null;
      if (this.#worker !== worker || this.#pending.size > 0) return;
      // A write from now on starts a new thread; this one has nothing in flight.
      this.#worker = null;
      void this.#stop(worker);
    }, this.opts.idleMs ?? IDLE_MS);
    // The idle timer must not keep a process alive that has nothing else to do.
    Deno.unrefTimer(this.#idle);
  }

  /** Ends the thread after the batches already sent; resolves once its connection is closed. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#idle !== null) clearTimeout(this.#idle);
    if (this.#startSoon !== null) clearTimeout(this.#startSoon);
    const worker = this.#worker;
    this.#worker = null;
    return this.#closing = worker ? this.#stop(worker) : Promise.resolve();
  }

  /** Closes the thread's connection after the batches already sent, then ends the thread. */
  #stop(worker: Worker): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        worker.terminate();
        resolve();
      };
      // A thread that fails meanwhile (it could not open) never answers the close.
      worker.addEventListener("message", (e: MessageEvent<WriterReply>) => {
        if (e.data.type === "closed" || e.data.type === "failed") done();
      });
      worker.addEventListener("error", done);
      worker.postMessage({ type: "close" } satisfies WriterMessage);
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL("./writer_thread.ts", import.meta.url), {
      type: "module",
      name: "writer",
    });
    worker.addEventListener("message", (e: MessageEvent<WriterReply>) => {
      const m = e.data;
      if (m.type === "done") {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        if (m.error === null) p?.resolve();
        else p?.reject(new Error(m.error));
        this.#armIdle(worker);
      } else if (m.type === "opened") {
        if (this.#worker !== worker) return;
        this.#ready = worker;
        // The writes that started it may all have committed meanwhile.
        this.#armIdle(worker);
      } else if (m.type === "failed") this.#fail(worker, `cannot open ${this.path}: ${m.error}`);
    });
    worker.addEventListener("error", (e) => {
      // Unhandled, a worker's error would end the server; its batches fail instead, and the
      // next write starts a new thread.
      e.preventDefault();
      this.#fail(worker, e.message);
    });
    const { busyTimeoutMs, autocheckpointPages } = this.opts;
    worker.postMessage(
      { type: "open", path: this.path, busyTimeoutMs, autocheckpointPages } satisfies WriterMessage,
    );
    return this.#worker = worker;
  }

  /**
   * Fails every batch in flight. A batch's own errors are caught and rolled back in the
   * thread; this is the thread itself failing (its module or the file could not be opened),
   * before it ran any batch. With a fallback, writes stay on the main thread from then on.
   */
  #fail(worker: Worker, why: string): void {
    worker.terminate();
    if (this.#worker === worker) this.#worker = null;
    const error = new Error(`the database writer failed: ${why}`);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    if (this.opts.fallback && !this.#broken) {
      this.#broken = true;
      this.opts.onError?.(
        `the database writer thread failed (${why}); commits stay on the main thread's connection`,
      );
    }
  }
}

/** The store sends positional arguments only; a named one is a programming error. */
function named(sql: string): never {
  throw new Error(`the writer thread takes positional arguments only: ${sql.slice(0, 80)}`);
}
