/**
 * Finished jobs' status answers, kept as the JSON text that was sent. A finished job's view
 * changes only when an event is appended to it or to one of its children (a model deleted,
 * say), and every append goes through this process's event store when it is the only writer
 * (WORKERS=local holds the database's lock). The store's commit listener runs in the same
 * synchronous step as the commit's completion, before any caller of the append resumes, so
 * no answer sent after a 2xx write can come from an entry that write made stale.
 *
 * A shared store (hosted mode) cannot see other instances' appends: it gets no cache.
 *
 * Measured at 5,000 finished jobs: a status read was about 200 us of server CPU, of which the
 * SQLite read through the driver was 45 %; an answer from here skips the read, the decoding and
 * the JSON encoding.
 */
import type { EventStore } from "../db/event_store.ts";

interface Entry {
  json: string;
  children: readonly string[];
}

export class StatusCache {
  /** job id -> its answer, oldest entry first (evicted first). */
  #entries = new Map<string, Entry>();
  /** child id -> the parent whose entry shows that child. */
  #parents = new Map<string, string>();
  #bytes = 0;
  readonly #maxBytes: number;
  /** Commits seen so far: an answer read before a commit is not kept after it. */
  #commits = 0;

  /** Keeps up to `maxBytes` of JSON text (8 MiB, the default: about 4,000 finished jobs). */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /**
   * A cache of `maxBytes` fed by `store`'s commits; null when the store is shared with other
   * writers, or when `maxBytes` is 0.
   */
  static forStore(store: EventStore, maxBytes: number): StatusCache | null {
    if (store.shared || maxBytes <= 0) return null;
    const cache = new StatusCache(maxBytes);
    store.onCommit((_events, staged) => {
      cache.#commits++;
      for (const id of staged.keys()) cache.forget(id);
    });
    return cache;
  }

  /** The kept answer for `jobId`, if any. */
  get(jobId: string): string | undefined {
    return this.#entries.get(jobId)?.json;
  }

  /** Taken before reading an answer, and given back to `set`. */
  ticket(): number {
    return this.#commits;
  }

  /**
   * Keeps `json`, the whole answer for `jobId`, whose view shows `children`, unless a commit
   * came between `ticket` (taken before the answer was read) and now: the read may predate it.
   */
  set(ticket: number, jobId: string, json: string, children: readonly string[]): void {
    if (ticket !== this.#commits || json.length > this.#maxBytes / 64) return;
    this.#drop(jobId);
    this.#entries.set(jobId, { json, children });
    this.#bytes += json.length;
    for (const child of children) this.#parents.set(child, jobId);
    for (const id of this.#entries.keys()) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#drop(id);
    }
  }

  /** Drops `jobId`'s entry, and its parent's: a child's change shows in its parent's view. */
  forget(jobId: string): void {
    this.#drop(jobId);
    const parent = this.#parents.get(jobId);
    if (parent !== undefined) this.#drop(parent);
  }

  /** Drops `jobId`'s own entry. */
  #drop(jobId: string): void {
    const entry = this.#entries.get(jobId);
    if (!entry) return;
    this.#entries.delete(jobId);
    this.#bytes -= entry.json.length;
    for (const child of entry.children) {
      if (this.#parents.get(child) === jobId) this.#parents.delete(child);
    }
  }

  /** Entries kept. */
  get size(): number {
    return this.#entries.size;
  }
}
