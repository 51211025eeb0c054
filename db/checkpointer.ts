/**
 * WAL checkpoints off the writer's thread. A commit appends its pages to the WAL and syncs
 * it; a checkpoint later copies them into the database file and syncs that. With SQLite's
 * default (the committing connection checkpoints every 1000 pages), that second copy ran on
 * the main thread inside the commit that crossed the mark: for a job printing 60 MB it was
 * about 300 ms of the main thread's 700, every event behind it waiting.
 *
 * Here the writer's autocheckpoint is raised to a bound, and a thread of its own runs a
 * PASSIVE checkpoint each time about as much was written as SQLite's default would wait for.
 * It never waits for a lock and never blocks the writer; if it falls behind, the WAL grows
 * until the writer's own autocheckpoint takes over at the bound, as before. Durability is
 * unchanged: a commit is durable once its WAL frames are synced (`synchronous = FULL`),
 * whoever copies them later.
 *
 * The thread starts with the first checkpoint and ends after a while without one: an isolate
 * costs some 8 MB of RSS, which a server that only serves reads should not pay.
 */

/**
 * WAL pages past which the committing connection checkpoints itself (about 64 MiB with 4 KiB
 * pages): the WAL cannot grow without limit when the checkpoint thread falls behind.
 */
export const WRITER_AUTOCHECKPOINT_PAGES = 16384;
/** Written bytes between two checkpoints: SQLite's default cadence, 1000 pages of 4 KiB. */
const CHECKPOINT_BYTES = 4 * 1024 * 1024;
/**
 * What a commit adds to the WAL besides its payload: the pages it touches (an events leaf and
 * its index, the job's row and its indexes), whole, however little changed on them.
 */
const COMMIT_BYTES = 8 * 4096;
/** The thread ends after this long without a checkpoint. */
const IDLE_MS = 30_000;

export interface Checkpointer {
  /** Counts a commit of about `bytes` of payload; checkpoints once enough was written. */
  committed(bytes: number): void;
  /** Ends the thread, if it runs, after its current checkpoint. */
  stop(): Promise<void>;
}

/** The checkpointer of the database file at `path`; its thread starts when first needed. */
export function checkpointer(
  path: string,
  onError: (message: string) => void = (m) => console.error(`[trainer] ${m}`),
): Checkpointer {
  let written = 0;
  let thread: CheckpointThread | null = null;
  let idle: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const stopThread = () => {
    const t = thread;
    thread = null;
    return t ? t.stop() : Promise.resolve();
  };
  return {
    committed(bytes) {
      written += bytes + COMMIT_BYTES;
      if (written < CHECKPOINT_BYTES || stopped) return;
      written = 0;
      if (thread === null) {
        const started = checkpointThread(path, (message) => {
          // A thread that died is replaced at the next checkpoint; until then the writer's
          // own bound applies.
          if (thread === started) thread = null;
          onError(`the WAL checkpoint thread failed: ${message}`);
        });
        thread = started;
      }
      thread.poke();
      if (idle !== null) clearTimeout(idle);
      const timer = setTimeout(() => {
        idle = null;
        void stopThread();
      }, IDLE_MS);
      // The idle timer must not keep a process alive that has nothing else to do.
      Deno.unrefTimer(timer);
      idle = timer;
    },
    stop() {
      stopped = true;
      if (idle !== null) clearTimeout(idle);
      return stopThread();
    },
  };
}

interface CheckpointThread {
  /** Asks for a checkpoint; pokes while one runs make one more after it. */
  poke(): void;
  stop(): Promise<void>;
}

function checkpointThread(path: string, died: (message: string) => void): CheckpointThread {
  const worker = new Worker(new URL("./checkpoint_thread.ts", import.meta.url), {
    type: "module",
    name: "checkpoint",
  });
  let running = false;
  let again = false;
  let closed: (() => void) | null = null;
  let stopping: Promise<void> | null = null;
  const send = () => {
    again = false;
    running = true;
    worker.postMessage({ poke: true });
  };
  const fail = (message: string) => {
    worker.terminate();
    closed?.();
    died(message);
  };
  worker.addEventListener("message", (event: MessageEvent<string | { failed: string }>) => {
    if (typeof event.data === "object") fail(event.data.failed);
    else if (event.data === "idle") {
      running = false;
      if (again && !stopping) send();
    } else if (event.data === "closed") {
      worker.terminate();
      closed?.();
    }
  });
  worker.addEventListener("error", (event) => {
    // Unhandled, a worker's error would end the server.
    event.preventDefault();
    fail(event.message);
  });
  worker.postMessage({ open: path });
  return {
    poke() {
      // One message per checkpoint, however many pokes came meanwhile.
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
