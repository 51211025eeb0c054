/**
 * Sends a job's queued output to its sink (jobs/output.ts fills the queue): a background
 * flusher appends it in bounded batches, a batch as soon as enough is queued or after
 * `flushMs`. Memory is bounded: past MAX_PENDING_BYTES `room()` makes the readers wait until
 * the sink catches up. A sink that keeps failing is retried a bounded number of times, then
 * the flusher gives up and reports it, so a job can never wedge on its own output.
 */
import type { OutputEvent } from "./decide.ts";
import type { LogSource } from "./log_capture.ts";
import { OutputQueue } from "./output_queue.ts";

/**
 * One sink call carries at most this much: it is one structured clone across the thread and
 * one transaction, and neither may grow with what the child prints. Not much smaller either:
 * every call waits its turn for the database's write lock, and with the slow-disk drill's lock
 * (held 300 ms of every 400 ms) 4 MiB calls took twice as long as 16 MiB ones to store 60 MB.
 */
const MAX_CALL_BYTES = 16 * 1024 * 1024;
const MAX_CALL_EVENTS = 1000;
/**
 * Unsent output of one job above which its pipes are no longer read. The slow-disk drill
 * measures the bound: the reader takes about 135 MB/s from a fast child, so a database
 * write-locked for 300 ms meets ~40 MB of backlog, and a child that must never block while the
 * database is briefly locked needs that much room. 64 MiB keeps that margin (1,000,000 lines of
 * 60 bytes, the drill's whole log, fit) while a script printing forever costs at most this
 * much per running job instead of growing the server until it dies.
 */
export const MAX_PENDING_BYTES = 64 * 1024 * 1024;
/** Tries of one batch before the flusher gives up: about 5 s of backoff in all. */
const MAX_TRIES = 8;

export type OutputSink = (events: OutputEvent[]) => Promise<void>;

export interface FlushOptions {
  flushMs?: number;
  /** Pending bytes that start a flush at once rather than after `flushMs`. */
  maxBatchBytes?: number;
  maxPendingBytes?: number;
  maxTries?: number;
  /** Called once when the sink kept failing and the output is dropped from then on. */
  onFailed?: (message: string) => void;
}

export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function inFile(event: OutputEvent): boolean {
  return event.type === "log" && "file" in event.data;
}

export class OutputFlusher {
  /** What is waiting to be sent; call `schedule()` after adding to it. */
  readonly queue = new OutputQueue();
  /** The job's log file, when its stdout goes there: synced before a range of it is sent. */
  logFile: LogSource | null = null;
  #retry: OutputEvent[] | null = null;
  #tries = 0;
  #flushing: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #room: (() => void)[] = [];
  #failure: string | null = null;

  constructor(readonly sink: OutputSink, readonly opts: FlushOptions) {}

  /** Why the output could not be stored, once the flusher gave up; null until then. */
  get failure(): string | null {
    return this.#failure;
  }

  /** Null while there is room for more; else settles once there is (or the flusher gave up). */
  room(): Promise<void> | null {
    return this.queue.bytes > this.#cap && this.#failure === null
      ? new Promise<void>((r) => this.#room.push(r))
      : null;
  }

  /** Sends what is queued, at once when it is a batch's worth, else after `flushMs`. */
  schedule(): void {
    if (this.#flushing) return;
    if (this.queue.bytes >= (this.opts.maxBatchBytes ?? 256 * 1024)) {
      void this.#flush();
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      if (!this.#flushing) void this.#flush();
    }, this.opts.flushMs ?? 50);
  }

  /** Sends everything queued; resolves when it is durable or the flusher gave up. */
  async close(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.#failure === null && (this.#flushing || this.#hasPending())) {
      await (this.#flushing ?? this.#flush());
    }
  }

  /** Gives up on the job's output for `why`; what is queued is dropped. */
  fail(why: string): void {
    this.#failure = why;
    // Nothing more is kept: the job is failed, and its readers only drain the pipes.
    this.queue.clear();
    this.#retry = null;
    this.#wake();
    this.opts.onFailed?.(this.#failure);
  }

  get #cap(): number {
    return this.opts.maxPendingBytes ?? MAX_PENDING_BYTES;
  }

  #hasPending(): boolean {
    return this.#retry !== null || !this.queue.empty;
  }

  /** Sends batches until nothing is pending; one flusher at a time. */
  #flush(): Promise<void> {
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = null;
      // Lines that arrived after the last check saw a flush in flight and did not schedule.
      if (this.#failure === null && this.#hasPending()) this.schedule();
    });
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    while (this.#failure === null && this.#hasPending()) {
      const batch = this.#retry ?? this.queue.take(MAX_CALL_BYTES, MAX_CALL_EVENTS);
      try {
        // A range in the log is a promise that its lines are on disk. A failed sync is not
        // tried again: the next one may succeed with the failed pages lost (Linux).
        if (this.logFile && batch.some(inFile)) {
          try {
            await this.logFile.sync();
          } catch (e) {
            this.fail(`the job's log file could not be synced: ${message(e)}`);
            return;
          }
        }
        await this.sink(batch);
        this.#retry = null;
        this.#tries = 0;
      } catch (e) {
        this.#retry = batch;
        if (++this.#tries >= (this.opts.maxTries ?? MAX_TRIES)) {
          this.#giveUp(batch.length, e);
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** (this.#tries - 1))));
      } finally {
        this.#wake();
      }
    }
  }

  #giveUp(events: number, error: unknown): void {
    this.fail(
      `the job's output could not be stored after ${this.#tries} tries ` +
        `(${events} events in the failing batch): ${message(error)}`,
    );
  }

  #wake(): void {
    if (this.queue.bytes > this.#cap && this.#failure === null) return;
    const waiting = this.#room;
    this.#room = [];
    for (const resume of waiting) resume();
  }
}
