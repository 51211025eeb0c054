/**
 * SIGTERM and SIGINT stop a server or a worker gracefully: its running jobs are stopped and
 * recorded as interrupted. A second signal exits at once. But one Ctrl-C can arrive twice:
 * started through `deno task` (as `./trainer serve` does), the process gets the terminal's
 * SIGINT and the task runner's forward of it. A group SIGINT exited at once in 1 of 6 tries
 * ("SIGINT again: exiting now"), skipping the graceful stop. So a signal that comes within
 * REPEAT_MS of the first is taken as the same stop, and only a later one exits at once.
 */

/** Longer than a duplicate delivery takes, shorter than a person's second Ctrl-C. */
export const REPEAT_MS = 500;

export interface StopSignalOptions {
  /** The graceful stop; called once. */
  stop: (signal: string) => Promise<void>;
  log: (message: string) => void;
  now?: () => number;
  exit?: (code: number) => void;
}

/** The handler for stop signals: the first stops, a repeat is ignored, a later one exits. */
export function stopSignalHandler(opts: StopSignalOptions): (signal: string) => void {
  const now = opts.now ?? Date.now;
  const exit = opts.exit ?? Deno.exit;
  let first: number | null = null;
  return (signal) => {
    if (first === null) {
      first = now();
      void opts.stop(signal);
    } else if (now() - first >= REPEAT_MS) {
      opts.log(`${signal} again: exiting now`);
      exit(130);
    } else opts.log(`${signal} again at once: the same stop (send it again to exit now)`);
  };
}

/** Installs `stopSignalHandler` for SIGTERM and SIGINT. */
export function onStopSignals(opts: StopSignalOptions): void {
  const handle = stopSignalHandler(opts);
  Deno.addSignalListener("SIGTERM", () => handle("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => handle("SIGINT"));
}
