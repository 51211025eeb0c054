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

/**
 * One stream's wake-ups. A wake that comes while the stream is busy reading or writing is
 * kept, so a commit made meanwhile is never slept through.
 */
export class Subscription {
  #resolve: ((woken: boolean) => void) | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pending = false;

  constructor(readonly wants: (events: StoredEvent[]) => boolean) {}

  /** Resolves true when woken (now, if woken since the last wait), false after `ms`. */
  wait(ms: number): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      this.#resolve = resolve;
      this.#timer = setTimeout(() => this.#settle(false), Math.max(0, ms));
    });
  }

  wake(): void {
    if (this.#resolve) this.#settle(true);
    else this.#pending = true;
  }

  #settle(woken: boolean): void {
    clearTimeout(this.#timer);
    const resolve = this.#resolve;
    this.#resolve = null;
    resolve?.(woken);
  }
}

let openEverywhere = 0;

/** The number of SSE streams open in this process (all apps), for metrics. */
export function openStreamCount(): number {
  return openEverywhere;
}

export class StreamHub {
  #aborts = new Set<() => void>();
  #waiters = new Set<Subscription>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #seen = 0;
  #polling = false;

  constructor(readonly db: Db, store: EventStore, readonly opts: StreamHubOptions) {
    store.onCommit((events) => {
      this.#seen = Math.max(this.#seen, events.at(-1)?.seq ?? 0);
      for (const w of this.#waiters) if (w.wants(events)) w.wake();
    });
  }

  /** The newest sequence number this process has seen committed. */
  get seen(): number {
    return this.#seen;
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

  /** Registers a stream's interest in commits; `unsubscribe` when it ends. */
  subscribe(wants: (events: StoredEvent[]) => boolean): Subscription {
    const sub = new Subscription(wants);
    this.#waiters.add(sub);
    return sub;
  }

  unsubscribe(sub: Subscription): void {
    this.#waiters.delete(sub);
    sub.wake();
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
