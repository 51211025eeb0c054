/**
 * Runs the lease reaper lazily (on worker requests, at most every
 * `minGapMs`) and on a timer, so a lost worker's job ends within about a second of its
 * lease, whether or not anyone is asking. Several API instances may reap at once: each
 * expiry is a unit fenced by the job's version, so only one of them records it.
 */
import type { Leases } from "./leases.ts";

export class Reaper {
  #last = 0;
  #running: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly leases: Leases,
    readonly opts: { minGapMs?: number; log?: (m: string) => void } = {},
  ) {}

  /** Reaps unless it did so less than `minGapMs` ago; resolves when that pass is done. */
  maybe(): Promise<void> {
    if (this.#running) return this.#running;
    if (Date.now() - this.#last < (this.opts.minGapMs ?? 250)) return Promise.resolve();
    this.#last = Date.now();
    this.#running = this.leases.reap()
      .then((n) => {
        if (n) this.opts.log?.(`reaped ${n} expired lease(s)`);
      })
      .catch((e) => this.opts.log?.(`reaping leases failed: ${e}`))
      .finally(() => this.#running = null);
    return this.#running;
  }

  start(everyMs = 1000): void {
    this.#timer ??= setInterval(() => void this.maybe(), everyMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
