/**
 * WAL checkpoints off the writer's thread. A commit appends its pages to the WAL and syncs
 * it; a checkpoint later copies them into the database file and syncs that. With SQLite's
 * default (the committing connection checkpoints every 1000 pages), that second copy ran on
 * the main thread inside the commit that crossed the mark: for a job printing 60 MB it was
 * about 300 ms of the main thread's 700, every event behind it waiting.
 *
 * Here the writer's autocheckpoint is raised to a bound, and a thread of its own runs a
 * PASSIVE checkpoint after commits. It never waits for a lock and never blocks the writer;
 * if it falls behind, the WAL grows until the writer's own autocheckpoint takes over at the
 * bound, as before. Durability is unchanged: a commit is durable once its WAL frames are
 * synced (`synchronous = FULL`), whoever copies them later.
 */

/**
 * WAL pages past which the committing connection checkpoints itself (about 64 MiB with 4 KiB
 * pages): the WAL cannot grow without limit when the checkpoint thread falls behind.
 */
export const WRITER_AUTOCHECKPOINT_PAGES = 16384;

export interface Checkpointer {
  /** Asks for a checkpoint soon; pokes while one runs make one more after it. */
  poke(): void;
  /** Ends the thread after its current checkpoint, closing its connection. */
  stop(): Promise<void>;
}

/** Starts the checkpoint thread of the database file at `path`. */
export function startCheckpointer(path: string): Checkpointer {
  const worker = new Worker(new URL("./checkpoint_thread.ts", import.meta.url), {
    type: "module",
    name: "checkpoint",
  });
  let running = false;
  let again = false;
  let closed: (() => void) | null = null;
  worker.addEventListener("message", (event: MessageEvent<string>) => {
    if (event.data === "idle") {
      running = false;
      if (again) send();
    } else if (event.data === "closed") {
      worker.terminate();
      closed?.();
    }
  });
  const send = () => {
    again = false;
    running = true;
    worker.postMessage({ poke: true });
  };
  worker.postMessage({ open: path });
  let stopping: Promise<void> | null = null;
  return {
    poke() {
      // One message per checkpoint, however many commits came meanwhile.
      if (stopping) return;
      if (running) again = true;
      else send();
    },
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        closed = resolve;
        worker.postMessage({ close: true });
      });
      return stopping;
    },
  };
}
