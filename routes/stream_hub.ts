/**
 * What the SSE streams of one app share: the cap on open streams, and the wake-ups.
 *
 * A stream that has caught up waits here. It wakes early when this process commits an event
 * it wants (EventStore.onCommit), and otherwise when one shared poll of the log's end sees
 * it grow: in hosted mode other instances append to the same database and no notification
 * crosses processes. One poll per process, not one per stream, keeps 1,000 idle streams at
 * one query a second.
 */
import type { Db } from "../db/client.ts";
import type { EventStore } from "../db/event_store.ts";
import { lastSeq } from "../db/stream_queries.ts";
import type { StoredEvent } from "../jobs/events.ts";

export interface StreamHubOptions {
  maxStreams: number;
  /** How often the shared poll reads the log's end, ms. */
  pollMs: number;
  lifecycle: { shuttingDown: boolean };
}

interface Waiter {
  wants(events: StoredEvent[]): boolean;
  wake(): void;
}

let openEverywhere = 0;

/** The number of SSE streams open in this process (all apps), for metrics. */
export function openStreamCount(): number {
  return openEverywhere;
}

export class StreamHub {
  #aborts = new Set<() => void>();
  #waiters = new Set<Waiter>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #seen = 0;
  #polling = false;

  constructor(readonly db: Db, store: EventStore, readonly opts: StreamHubOptions) {
    store.onCommit((events) => {
      this.#seen = Math.max(this.#seen, events.at(-1)?.seq ?? 0);
      for (const w of this.#waiters) if (w.wants(events)) w.wake();
    });
  }

  /** Streams open in this app. */
  get open(): number {
    return this.#aborts.size;
  }

  /**
   * Registers a stream; false when MAX_STREAMS are open already. `abort` ends it (at
   * shutdown); the returned release must be called when it ends.
   */
  tryOpen(abort: () => void): (() => void) | null {
    if (this.#aborts.size >= this.opts.maxStreams) return null;
    this.#aborts.add(abort);
    openEverywhere++;
    this.#timer ??= setInterval(() => void this.#tick(), this.opts.pollMs);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#aborts.delete(abort);
      openEverywhere--;
      if (this.#aborts.size === 0 && this.#timer !== null) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    };
  }

  /**
   * Resolves after `ms`, or earlier when events that `wants` accepts may have arrived, or
   * when `signal` aborts (a stream whose client left must not sleep out its timeout).
   */
  wait(wants: (events: StoredEvent[]) => boolean, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const waiter: Waiter = {
        wants,
        wake: () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", waiter.wake);
          this.#waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, Math.max(0, ms));
      signal.addEventListener("abort", waiter.wake, { once: true });
      this.#waiters.add(waiter);
    });
  }

  #wakeAll(): void {
    for (const w of this.#waiters) w.wake();
  }

  async #tick(): Promise<void> {
    if (this.opts.lifecycle.shuttingDown) {
      // The server waits for open responses before it stops; endless streams must end first.
      for (const abort of this.#aborts) abort();
      this.#wakeAll();
      return;
    }
    if (this.#polling || this.#waiters.size === 0) return;
    this.#polling = true;
    try {
      const end = await lastSeq(this.db);
      if (end > this.#seen) {
        this.#seen = end;
        this.#wakeAll();
      }
    } catch (error) {
      // A database that does not answer now may answer on the next tick; the streams wait.
      console.error("[trainer] stream poll failed:", error);
    } finally {
      this.#polling = false;
    }
  }
}
