/**
 * `GET /train/jobs` answers, kept as the JSON text that was sent, by query. A list shows only
 * the `jobs` projection, which changes only by a commit of this process's event store when it
 * is the only writer (WORKERS=local holds the database's lock): every commit drops every kept
 * answer, in the same synchronous step as the commit's completion, before any caller of the
 * append resumes. So no answer sent after a 2xx write comes from before that write.
 *
 * Between commits, the same page is asked for again and again (a dashboard's poll, a script's
 * loop): the bench's `?limit=5&status=completed` at 1,000,000 jobs was about 250 us of server
 * CPU a read (two counts and a page from the database). A shared store (hosted mode) cannot
 * see other instances' commits: it gets no cache.
 */
import type { EventStore } from "../db/event_store.ts";

export class ListCache {
  /** Query key -> the answer, oldest first (evicted first). */
  #entries = new Map<string, string>();
  #bytes = 0;
  readonly #maxBytes: number;
  /** Commits seen so far: an answer read before a commit is not kept after it. */
  #commits = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /**
   * A cache of `maxBytes` cleared by `store`'s commits; null when the store is shared with
   * other writers, or when `maxBytes` is 0.
   */
  static forStore(store: EventStore, maxBytes: number): ListCache | null {
    if (store.shared || maxBytes <= 0) return null;
    const cache = new ListCache(maxBytes);
    store.onCommit(() => cache.clear());
    return cache;
  }

  /** The kept answer for the query `key`, if any. */
  get(key: string): string | undefined {
    return this.#entries.get(key);
  }

  /** Taken before reading an answer, and given back to `set`. */
  ticket(): number {
    return this.#commits;
  }

  /** Keeps `json` for `key`, unless a commit came since `ticket`: the read may predate it. */
  set(ticket: number, key: string, json: string): void {
    if (ticket !== this.#commits || json.length > this.#maxBytes / 16) return;
    const old = this.#entries.get(key);
    if (old !== undefined) {
      this.#entries.delete(key);
      this.#bytes -= old.length;
    }
    this.#entries.set(key, json);
    this.#bytes += json.length;
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(k);
      this.#bytes -= v.length;
    }
  }

  /** Drops every answer: called on each commit. */
  clear(): void {
    this.#commits++;
    if (this.#entries.size === 0) return;
    this.#entries.clear();
    this.#bytes = 0;
  }

  /** Answers kept. */
  get size(): number {
    return this.#entries.size;
  }
}
