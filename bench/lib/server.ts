/**
 * Starts the real server process the way `deno task serve` does, on its own temporary
 * database and models folder, and finds its address from the `listening on` line; and any
 * other module of the checkout (a remote worker) the same way.
 */
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** The checkout whose main.ts is served: this one, or BENCH_REPO (to measure a scratch copy). */
export const SERVED_REPO = Deno.env.get("BENCH_REPO") || REPO;

export interface ServerOptions {
  /** Folder for the database and models (created by the caller, removed by the caller). */
  dir: string;
  /** Database file path; defaults to `${dir}/trainer.db`. */
  dbPath?: string;
  env?: Record<string, string>;
  /** Deadline for the listen line, ms. */
  startTimeoutMs?: number;
}

export interface Server {
  url: string;
  pid: number;
  dbPath: string;
  child: Deno.ChildProcess;
  /** Everything the server printed so far (stdout and stderr). */
  output: string[];
  /** Resolves with the exit status once the process ends. */
  status: Promise<Deno.CommandStatus>;
  /** SIGTERM and wait for the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<Deno.CommandStatus>;
}

/** Starts `deno run --allow-all --frozen main.ts` with PORT=0 and waits until it listens. */
export async function startServer(opts: ServerOptions): Promise<Server> {
  const dbPath = opts.dbPath ?? `${opts.dir}/trainer.db`;
  const started = await startProcess({
    script: "main.ts",
    env: {
      PORT: "0",
      HOST: "127.0.0.1",
      API_TOKEN: "",
      DATABASE_URL: `file:${dbPath}`,
      MODELS_DIR: `${opts.dir}/models`,
      MAX_CONCURRENT_JOBS: "2",
      ...opts.env,
    },
    ready: /listening on (http:\/\/\S+)/,
    what: "server",
    timeoutMs: opts.startTimeoutMs,
  });
  return { ...started, url: started.ready[1], dbPath };
}

export interface ProcessOptions {
  /** The module of SERVED_REPO to `deno run --allow-all --frozen`. */
  script: string;
  /** Set over the inherited environment, or alone with `clearEnv`. */
  env: Record<string, string>;
  clearEnv?: boolean;
  /** The line that says the process is ready. */
  ready: RegExp;
  /** Names the process in errors. */
  what: string;
  /** Deadline for the ready line, ms (60 s unless given). */
  timeoutMs?: number;
}

/** A process of this checkout, started and ready. */
export type Started = Omit<Server, "url" | "dbPath"> & { ready: RegExpExecArray };

/** Starts a module of this checkout and waits for its `ready` line. */
export async function startProcess(opts: ProcessOptions): Promise<Started> {
  const child = new Deno.Command("deno", {
    // The young generation's cap that `deno task serve` sets (deno.json).
    args: ["run", "--allow-all", "--frozen", "--v8-flags=--max-semi-space-size=2", opts.script],
    cwd: SERVED_REPO,
    env: opts.env,
    clearEnv: opts.clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output: string[] = [];
  let onLine: ((line: string) => void) | null = null;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const lines = stream.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter());
    for await (const line of lines) {
      if (output.length < 10_000) output.push(line);
      onLine?.(line);
    }
  };
  const reading = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = child.status.then(async (s) => {
    await reading.catch(() => {});
    return s;
  });
  const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${opts.what} was not ready in time:\n${output.join("\n")}`)),
      opts.timeoutMs ?? 60_000,
    );
    onLine = (line) => {
      const m = opts.ready.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    for (const line of output) onLine(line);
    status.then((s) => {
      clearTimeout(timer);
      reject(new Error(`${opts.what} exited (${s.code}) before ready:\n${output.join("\n")}`));
    });
  }).catch(async (e) => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await status;
    throw e;
  });
  onLine = null;
  const stop = async (graceMs = 15_000) => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    const s = await status;
    clearTimeout(timer);
    return s;
  };
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    return await status;
  };
  return { ready, pid: child.pid, child, output, status, stop, kill };
}

/** Splits a text stream into lines. */
export function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) controller.enqueue(p);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}

/** Writes a MODEL_REGISTRY file in `dir` and returns its path. */
export async function writeRegistry(
  dir: string,
  types: Record<string, { command: string[]; env?: string[]; extension?: string }>,
): Promise<string> {
  const path = `${dir}/registry.json`;
  await Deno.writeTextFile(path, JSON.stringify(types, null, 2));
  return path;
}

/** Polls `check` until it returns a value other than undefined, or throws at the deadline. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Waits until no job of the database at `dbPath` is waiting or running, reading the file
 * itself (read-only) rather than asking the server, which is busy with the drain.
 */
export async function waitDrained(dbPath: string, pollMs: number): Promise<void> {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    await waitFor(
      "every job to finish",
      () => {
        const row = db.prepare(
          "SELECT count(*) AS n FROM jobs WHERE status IN ('started', 'running')",
        ).get();
        return Number(row!.n) === 0 ? true : undefined;
      },
      900_000,
      pollMs,
    );
  } finally {
    db.close();
  }
}
