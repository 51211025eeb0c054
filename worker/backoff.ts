/** Retry pacing for the worker: exponential backoff and a sleep that shutdown can cut short. */

/** First wait after a failure, and the most any wait grows to. */
export const FIRST_DELAY_MS = 500;
export const MAX_DELAY_MS = 30_000;

/**
 * Delays of 0.5 s doubling up to 30 s. Capped because the API may be down for minutes (a
 * restart, a deploy): a worker should notice it is back within 30 s, not hours.
 */
export class Backoff {
  #next = FIRST_DELAY_MS;

  /** The delay to wait now; each call doubles the next one. */
  next(): number {
    const delay = this.#next;
    this.#next = Math.min(this.#next * 2, MAX_DELAY_MS);
    return delay;
  }

  /** Back to the first delay, after a success. */
  reset(): void {
    this.#next = FIRST_DELAY_MS;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    // A deadline already past is a zero wait (a negative one warns, TimeoutNegativeWarning).
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** "4 s", "0.5 s": how long a retry waits, as the log says it. */
export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * Logs an outage of the API once, however many calls fail during it, and once when it is
 * over: a worker whose jobs report output every second must not log every second.
 */
export class Outage {
  #down = false;
  #back: { promise: Promise<void>; resolve(): void } = Promise.withResolvers<void>();

  constructor(readonly url: string, readonly warn: (message: string) => void) {}

  /** A call failed for want of the API; `retryMs` is when that call tries again. */
  failed(what: string, error: string, retryMs: number): void {
    if (this.#down) return;
    this.#down = true;
    this.warn(
      `cannot reach TRAINER_URL=${this.url} (${what}): ${error}; retrying in ${seconds(retryMs)}`,
    );
  }

  #lastContact = Date.now();

  /** Milliseconds since a call last got through. */
  silentMs(): number {
    return Date.now() - this.#lastContact;
  }

  /** A call got through. */
  over(): void {
    this.#lastContact = Date.now();
    if (!this.#down) return;
    this.#down = false;
    this.warn(`TRAINER_URL=${this.url} answers again`);
    this.#back.resolve();
    this.#back = Promise.withResolvers<void>();
  }

  /**
   * Waits `ms`, or less if another call gets through meanwhile: reports held back by an
   * outage go out as soon as the API is back, not after their grown backoff.
   */
  retryAfter(ms: number): Promise<void> {
    return Promise.race([sleep(ms), this.#back.promise]);
  }
}
